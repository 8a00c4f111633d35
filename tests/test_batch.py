"""`legato batch`: requests read line by line, failures kept to their row, resumable, on local Ray."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from legato.batch import PID_FILE, read_requests, run_batch
from legato.errors import InputError

QUICK = {"generator": "toy", "iterations": 6, "n_random": 4, "n_fid": 0, "report": False,
         "options": {"hidden": 8, "lr": 1e-3}}


def write_requests(path, *requests):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in requests) + "\n")
    return path


def test_requests_that_cannot_run_fail_their_own_row(tmp_path):
    path = write_requests(tmp_path / "r.jsonl", {"identity": "seed:1"}, "{not json", {"method": "legato"},
                          {"identity": "seed:2", "colour": "red"}, {"identity": "seed:3", "name": "a"},
                          {"identity": "seed:4", "name": "a"}, {"identity": "seed:5", "name": "../x"}, "",
                          "# a comment")
    requests = read_requests(path)
    assert [r.error is None for r in requests] == [True, False, False, False, True, False, False]
    assert "not JSON" in requests[1].error and "identity" in requests[2].error
    assert "colour" in requests[3].error and "earlier request" in requests[5].error
    assert "plain folder name" in requests[6].error
    assert requests[0].name == "0001-seed-1"
    with pytest.raises(InputError, match="holds no request"):
        read_requests(write_requests(tmp_path / "empty.jsonl", "# nothing"))
    with pytest.raises(InputError, match="does not exist"):
        read_requests(tmp_path / "missing.jsonl")


def _batch_rows(out):
    with open(out / "summary.csv") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def test_batch_without_ray_finishes_the_good_requests_and_a_rerun_skips_them(tmp_path):
    bad_photo = tmp_path / "bad.png"
    bad_photo.write_bytes(b"not an image at all")
    path = write_requests(tmp_path / "r.jsonl", {**QUICK, "identity": "seed:5", "name": "five"},
                          {**QUICK, "identity": str(bad_photo), "name": "photo"},
                          {**QUICK, "identity": "seed:6", "name": "six", "options": {"colour": 1}},
                          {**QUICK, "identity": "seed:7", "name": "seven", "method": "guide"})
    out = tmp_path / "out"
    result = run_batch(path, out, ray="none", progress=False)
    status = {r["name"]: r["status"] for r in result.rows}
    assert status == {"five": "finished", "photo": "failed", "six": "failed", "seven": "finished"}
    errors = {r["name"]: r.get("error") for r in result.rows}
    assert "cannot read image" in errors["photo"] and "\n" not in errors["photo"]
    assert "colour" in errors["six"]
    assert (out / "runs" / "five" / "metrics.json").is_file() and not (out / "runs" / "photo").exists()
    assert not (out / "runs" / "photo.partial").exists()  # a request that failed before training leaves nothing
    rows = _batch_rows(out)
    # each finished row carries its run's own numbers (rounded to 4 decimals), not just any cosine (always ≤ 1)
    for name in ("five", "seven"):
        run = json.loads((out / "runs" / name / "metrics.json").read_text())
        assert rows[name]["status"] == "finished"
        for key in ("id_target", "id_preservation"):
            assert float(rows[name][key]) == pytest.approx(run[key], abs=6e-5), (name, key)
    page = (out / "index.html").read_text()
    assert "2 of 4 requests finished" in page and "cannot read image" in page
    stamp = (out / "runs" / "five" / "metrics.json").stat().st_mtime_ns
    again = run_batch(path, out, ray="none", progress=False)
    assert again.skipped == 2 and again.failed == 2
    assert (out / "runs" / "five" / "metrics.json").stat().st_mtime_ns == stamp


def _cli(*args):
    return [sys.executable, "-m", "legato.cli.main", "batch", *map(str, args)]


def test_batch_on_local_ray_survives_a_killed_worker(tmp_path):
    pytest.importorskip("ray")  # the optional extra (make venv installs it)
    bad_photo = tmp_path / "bad.png"
    bad_photo.write_bytes(b"\x89PNG broken")
    long = {**QUICK, "iterations": 600, "options": {"hidden": 8, "lr": 1e-3, "checkpoint_every": 20,
                                                       "eval_every": 1000}}
    path = write_requests(tmp_path / "r.jsonl", {**long, "identity": "seed:5", "name": "long"},
                          {**QUICK, "identity": "seed:6", "name": "short"},
                          {**QUICK, "identity": str(bad_photo), "name": "photo"})
    out = tmp_path / "out"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(_cli(path, "--out", out, "--ray", "local"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    partial = out / "runs" / "long.partial"
    killed = None
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:  # kill the long request's worker mid-run
        if (partial / "checkpoint.pt").is_file() and (partial / PID_FILE).is_file():
            killed = int((partial / PID_FILE).read_text())
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=300)
    assert killed is not None, output
    assert proc.returncode == 1, output  # one request failed
    assert "2 of 3 requests finished" in output and "cannot read image" in output
    rows = _batch_rows(out)
    assert rows["long"]["status"] == rows["short"]["status"] == "finished"
    assert rows["photo"]["status"] == "failed"
    run = out / "runs" / "long"
    assert not partial.exists() and (run / "metrics.json").is_file()
    assert int((run / PID_FILE).read_text()) != killed  # a new worker finished it
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 600  # resumed: no step logged twice, none lost
    again = subprocess.run(_cli(path, "--out", out, "--ray", "none"), capture_output=True, text=True, env=env)
    assert "(2 before this run)" in again.stdout
