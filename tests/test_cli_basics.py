"""The command line answers --help/--version and turns user mistakes into one line + exit 2."""

import subprocess
import sys

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
