"""`legato adapter info DIR` — what an adapter bundle holds."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    adapter_app = typer.Typer(help="Inspect adapter bundles.", no_args_is_help=True)

    @adapter_app.command("info")
    def info(
        directory: str = typer.Argument(..., help="Adapter bundle folder."),
        as_json: bool = typer.Option(False, "--json", help="Print the config as JSON."),
    ) -> None:
        """Print an adapter bundle's sites, settings, fingerprint and metadata."""
        from safetensors import safe_open

        from legato.ode.bundle import WEIGHTS_NAME, read_config

        config = read_config(directory)
        with safe_open(f"{directory}/{WEIGHTS_NAME}", "pt") as f:
            params = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
        if as_json:
            typer.echo(json.dumps({**config, "parameters": params}, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"adapter bundle {directory}", show_header=False)
        for key in ("name", "field", "hidden", "t_end", "step_size", "method", "strength",
                    "base_model_fingerprint"):
            table.add_row(key, str(config.get(key)))
        table.add_row("sites", ", ".join(config.get("target_sites", [])))
        table.add_row("parameters", f"{params:,}")
        for key, value in config.get("metadata", {}).items():
            table.add_row(f"metadata.{key}", json.dumps(value)[:120])
        Console().print(table)

    app.add_typer(adapter_app, name="adapter")


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
