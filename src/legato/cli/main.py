"""Entry point of the `legato` command.

Each command lives in its own module under `legato.cli` and exposes `register(app)`; add the module's
name to `COMMAND_MODULES` to put it on the command line. Heavy imports (torch, models) happen inside the
commands so that `legato --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from legato import __version__
from legato.errors import LegatoError
from legato.runtime import keep_freed_memory

COMMAND_MODULES = [
    "legato.cli.adapters",
    "legato.cli.unlearn",
    "legato.cli.batch",
    "legato.cli.flow",
    "legato.cli.identity",
    "legato.cli.synthfaces",
    "legato.cli.lfwfaces",
    "legato.cli.generate",
    "legato.cli.evaluate",
    "legato.cli.sweep",
    "legato.cli.inspect",
]

app = typer.Typer(
    name="legato",
    help="Remove a person's identity from a frozen image generator with Neural-ODE adapters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"legato {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True
    ),
) -> None:
    """Remove a person's identity from a frozen image generator with Neural-ODE adapters."""


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a `LegatoError` becomes one line on stderr and exit code 2."""
    keep_freed_memory()
    try:
        # outside standalone mode click hands back a `typer.Exit(code)` as the return value
        code = app(args=argv, standalone_mode=False)
    except LegatoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except SystemExit as e:  # click raises this for --help in some paths
        return int(e.code or 0)
    except Exception as e:  # usage errors (unknown option, bad value) from typer's click layer
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return 2
        if type(e).__name__ == "Abort":
            print("aborted", file=sys.stderr)
            return 130
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
