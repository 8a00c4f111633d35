"""The command line answers --help/--version and turns user mistakes into one line + exit 2."""

import subprocess
import sys

import pytest

from legato import __version__
from legato.cli.main import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "legato.cli.main", *args], capture_output=True, text=True)


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and __version__ in r.stdout
    r = run("--help")
    assert r.returncode == 0 and "adapter" in r.stdout


def test_user_error_is_one_line_and_exit_2(tmp_path):
    r = run("adapter", "info", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "does not exist" in r.stderr


def test_main_returns_2_for_unknown_option(capsys):
    assert main(["adapter", "info", "--bogus"]) == 2


def test_unlearn_refuses_an_unavailable_device_in_one_line(tmp_path, capsys):
    import torch

    from legato.cli.main import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists here")
    rc = main(["unlearn", "--identity", "seed:1", "--out", str(tmp_path / "run"), "--generator", "toy",
               "--device", "cuda", "--iters", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "CUDA" in err[0]
    assert not (tmp_path / "run").exists()
    rc = main(["unlearn", "--identity", "seed:1", "--out", str(tmp_path / "run"), "--generator", "toy",
               "--device", "tpu9", "--iters", "1"])
    assert rc == 2 and "device" in capsys.readouterr().err


def test_rendering_options_are_refused_for_a_generator_without_rendering(tmp_path, capsys):
    from legato.cli.main import main

    rc = main(["unlearn", "--identity", "seed:1", "--out", str(tmp_path / "run"), "--generator", "toy",
               "--rendering-resolution", "64", "--iters", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "EG3D" in err
