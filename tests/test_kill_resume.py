"""A run killed with SIGKILL (no Ctrl-C handler runs: the process just stops, mid-step or mid-write) ten
times at random moments and resumed each time ends with the same adapter, bit for bit, as a run never
interrupted (`pytest -m slow tests/test_kill_resume.py`, about two minutes)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

KILLS = 10


def _command(out: Path, resume: bool) -> list[str]:
    args = [sys.executable, "-m", "legato.cli.main", "unlearn", "--generator", "toy", "--identity", "seed:5",
            "--out", str(out), "--iterations", "1500", "--lr", "0.001", "--hidden", "16", "--checkpoint-every", "7",
            "--log-every", "1", "--eval-every", "1000", "--n-random", "4", "--n-fid", "16", "--seed", "3"]
    return args + (["--resume"] if resume else [])


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_ten_sigkills_and_resumes_end_bit_identical(tmp_path):
    subprocess.run(_command(tmp_path / "whole", False), check=True, env=_env(), capture_output=True)
    out, work = tmp_path / "killed", tmp_path / "killed.partial"
    rng = random.Random(0)
    kills, resumed_from = 0, []
    while kills < KILLS:
        resume = (work / "checkpoint.pt").is_file()
        if resume:
            resumed_from.append(torch.load(work / "checkpoint.pt", weights_only=True)["step"])
        proc = subprocess.Popen(_command(out, resume), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        # kill once it has trained a little past its start (its log grows), at a random moment
        start = time.monotonic()
        steps_before = _logged_steps(work)
        while proc.poll() is None and _logged_steps(work) <= steps_before and time.monotonic() - start < 120:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:  # it finished (or failed) before the kill
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    if not out.exists():
        done = subprocess.run(_command(out, (work / "checkpoint.pt").is_file()), env=_env(), capture_output=True)
        assert done.returncode == 0, done.stderr.decode()
    assert kills == KILLS, f"only {kills} kills before the run finished: make it longer"
    # each restart continued from a later checkpoint than the one before (no kill lost the progress saved)
    assert len(resumed_from) >= KILLS - 1 and resumed_from == sorted(resumed_from) and resumed_from[-1] > 0
    whole = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    resumed = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 1500


def _logged_steps(work: Path) -> int:
    try:
        return len((work / "log.jsonl").read_text().splitlines())
    except OSError:
        return 0
