"""The one training loop (`unlearning.loop`) with a small objective of its own: resume is bit-exact after
Ctrl-C, early stop needs `stop_patience` passes in a row, and the loop names nothing of the objective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from legato.errors import TrainingError
from legato.unlearning import loop


class LineObjective:
    """Fit y = 3x − 1 from random batches; raises KeyboardInterrupt at `interrupt_at` (once)."""

    name = "line"

    def __init__(self, interrupt_at: int | None = None, nan_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1)
        self.params = list(self.model.parameters())
        self.interrupt_at, self.nan_at = interrupt_at, nan_at
        self.calls = []

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state):
        self.model.load_state_dict(state)

    def setup(self):
        self.calls.append("setup")

    def begin(self, start):
        self.calls.append(("begin", start))

    def end(self):
        self.calls.append("end")

    def progress_info(self, losses):
        return f"{losses['total']:.3f}"

    def step(self, step, rng):
        if step == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        x = torch.randn(16, 1, generator=rng)
        loss = (self.model(x) - (3 * x - 1)).pow(2).mean()
        if step == self.nan_at:
            loss = loss * float("nan")
            raise TrainingError(f"the loss became {loss.item()} at step {step}")
        loss.backward()
        return {"total": loss.item()}


def _settings(**kw):
    return loop.LoopSettings(iterations=30, lr=0.05, seed=3, log_every=5, checkpoint_every=7, **kw)


def test_an_interrupted_run_resumed_ends_bit_identical(tmp_path: Path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    whole = LineObjective()
    loop.run(whole, _settings(), tmp_path / "a", progress=False)
    cut = LineObjective(interrupt_at=12)
    with pytest.raises(KeyboardInterrupt):
        loop.run(cut, _settings(), tmp_path / "b", progress=False)
    assert "end" in cut.calls  # begin's changes are undone after an interruption too
    ckpt = loop.load_checkpoint(tmp_path / "b")
    assert ckpt["step"] == 11  # the completed steps exactly
    resumed = LineObjective()
    result = loop.run(resumed, _settings(), tmp_path / "b", resume=True, progress=False)
    assert result.steps == 30
    for p, q in zip(whole.params, resumed.params, strict=True):
        assert torch.equal(p, q)
    assert resumed.calls[:2] == ["setup", ("begin", 11)]
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20, 25, 30]  # the log has no duplicate after the resume


def test_early_stop_needs_patience_passes_in_a_row(tmp_path: Path):
    answers = iter([True, False, True, True, True])
    seen = []

    def check(model):
        seen.append(1)
        return {"passed": next(answers)}

    result = loop.run(LineObjective(), _settings(early_stop=True, stop_every=4, stop_patience=2), tmp_path,
                      progress=False, stop_check=check)
    # checks at steps 4 (pass), 8 (fail), 12 (pass), 16 (pass: two in a row) → stop at 16
    assert result.stopped_early and result.steps == 16 and len(seen) == 4
    (tmp_path / "off").mkdir()
    off = loop.run(LineObjective(), _settings(stop_every=4), tmp_path / "off", progress=False,
                   stop_check=lambda m: {"passed": True})
    assert not off.stopped_early and off.steps == 30  # early stop is off unless the settings turn it on


def test_a_failing_step_propagates_and_restores(tmp_path: Path):
    obj = LineObjective(nan_at=4)
    with pytest.raises(TrainingError, match="at step 4"):
        loop.run(obj, _settings(), tmp_path, progress=False)
    assert obj.calls[-1] == "end"


def test_the_time_to_a_verified_forget_counts_the_stop_checks_and_survives_a_resume(tmp_path: Path):
    import time as _time

    def slow_check(model):
        _time.sleep(0.05)
        return {"passed": True}

    settings = _settings(early_stop=True, stop_every=4, stop_patience=2, stop_consolidate=6)
    result = loop.run(LineObjective(), settings, tmp_path, progress=False, stop_check=slow_check)
    # verified at step 8 (two passes), then six steps of consolidation
    assert result.step_verified == 8 and result.steps == 14
    assert result.check_seconds >= 0.1 and result.seconds_to_verified >= result.check_seconds
    # the training clock stays without the checks: the time to verified is training until step 8 plus them
    assert result.seconds_to_verified - result.check_seconds <= result.seconds < result.seconds_to_verified
    (tmp_path / "cut").mkdir()
    with pytest.raises(KeyboardInterrupt):  # cut during the consolidation
        loop.run(LineObjective(interrupt_at=11), settings, tmp_path / "cut", progress=False, stop_check=slow_check)
    resumed = loop.run(LineObjective(), settings, tmp_path / "cut", resume=True, progress=False,
                       stop_check=slow_check)
    assert resumed.step_verified == 8 and resumed.steps == 14 and resumed.seconds_to_verified >= 0.1
    (tmp_path / "never").mkdir()
    never = loop.run(LineObjective(), settings, tmp_path / "never", progress=False,
                     stop_check=lambda m: {"passed": False})
    assert never.step_verified is None and never.seconds_to_verified is None and never.steps == 30
