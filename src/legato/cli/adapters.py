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
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from legato.errors import CheckpointError
        from legato.ode.bundle import WEIGHTS_NAME, read_config
        from legato.ode.strength_map import StrengthMap

        config = read_config(directory)
        fixed_names = _fixed_tensor_names(config)
        try:  # bundles are small: read every tensor, so a truncated or NaN one is named here, not at load
            tensors = load_file(f"{directory}/{WEIGHTS_NAME}")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read {directory}/{WEIGHTS_NAME}: {e}") from e
        bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise CheckpointError(f"adapter bundle {directory}: {len(bad)} tensor(s) hold NaN or inf "
                                  f"(first: {bad[0]!r})")
        sizes = {k: t.numel() for k, t in tensors.items()}
        # trained values, and those fixed before training (the keyed gate's keys and maps, the standardisation)
        fixed = sum(n for k, n in sizes.items() if k.split("::", 1)[-1] in fixed_names)
        params = sum(sizes.values()) - fixed
        if as_json:
            typer.echo(json.dumps({**config, "parameters": params, "fixed_values": fixed}, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"adapter bundle {directory}", show_header=False)
        for key in ("name", "field", "hidden", "t_end", "step_size", "method", "strength",
                    "base_model_fingerprint"):
            table.add_row(key, str(config.get(key)))
        table.add_row("sites", ", ".join(config.get("target_sites", [])))
        strength_map = StrengthMap.from_json(config.get("strength_map"), where=f"{directory}/adapter_config.json")
        table.add_row("strength map", "none (the strength is the time span)" if strength_map is None else
                      "calibrated: " + ", ".join(f"{s:g}→{u:.2f}" for s, u in
                                                 zip(strength_map.strengths, strength_map.values, strict=True)))
        table.add_row("parameters", f"{params:,} trained" + (f", {fixed:,} fixed (the gate's keys, maps and "
                                                             "standardisation)" if fixed else ""))
        for key, value in config.get("metadata", {}).items():
            table.add_row(f"metadata.{key}", json.dumps(value)[:120])
        Console().print(table)

    app.add_typer(adapter_app, name="adapter")


def _fixed_tensor_names(config: dict) -> set[str]:
    """The names (`func.field.keys`, ...) of an adapter's buffers under this bundle's settings: built, not
    listed, so a field's new buffer is counted as fixed without a change here."""
    from legato.ode.adapter import ODEAdapter
    from legato.ode.adapter_set import AdapterConfig

    settings = {k: config[k] for k in AdapterConfig.__dataclass_fields__ if k in config}
    channels = next(iter((config.get("channels") or {}).values()), 8)
    adapter = ODEAdapter(int(channels), **settings)
    return {name for name, _ in adapter.named_buffers()}

