"""`legato inspect FILE.pkl` — what an NVlabs network pickle holds (read without running anything from it)."""

from __future__ import annotations

import json

import typer

_ROWS = ("class_name", "img_resolution", "img_channels", "z_dim", "c_dim", "w_dim", "num_ws", "mapping_layers",
         "architecture", "channel_base", "channel_max", "num_fp16_res", "conv_clamp", "parameters", "tensors",
         "fp16_tensors", "format_version")


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect(
        path: str = typer.Argument(..., help="An NVlabs network pickle (StyleGAN2-ADA, stylegan3, EG3D)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Show the networks inside an NVlabs .pkl: classes, resolution, w_dim, num_ws, sizes."""
        from legato.generators.nvlabs.summary import summarize_pickle

        info = summarize_pickle(path)
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        names = list(info["networks"])
        table = Table(title=f"{path} (module source not executed)")
        table.add_column("")
        for name in names:
            table.add_column(name)
        for row in _ROWS:
            values = [info["networks"][n].get(row) for n in names]
            if all(v is None for v in values):
                continue
            table.add_row(row, *[f"{v:,}" if isinstance(v, int) and row == "parameters" else
                                 ("" if v is None else str(v)) for v in values])
        table.add_row("module_src bytes", *[str(info["networks"][n]["module_src"]["bytes"]) for n in names])
        console = Console()
        console.print(table)
        for key, value in info["other"].items():
            console.print(f"{key}: {json.dumps(value)[:200]}")
