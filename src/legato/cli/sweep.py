"""`legato sweep` — identity scores at adapter strengths 0 … 1: JSON, a plot and a fade strip."""

from __future__ import annotations

from pathlib import Path

import typer

from legato.cli import run_options


def parse_strengths(text: str) -> list[float]:
    """`"0:1:11"` (start:stop:count, both ends included) or `"0,0.5,1"` → strengths."""
    import numpy as np

    from legato.errors import InputError

    try:
        if ":" in text:
            start, stop, count = text.split(":")
            n = int(count)
            if n < 1:
                raise ValueError
            values = [round(float(v), 6) for v in np.linspace(float(start), float(stop), n)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise InputError(f"--strengths {text!r}: expected start:stop:count (0:1:11) or a list (0,0.5,1)") from e
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise InputError(f"--strengths {text!r}: every strength must lie in [0, 1]")
    return values


def _sweep_lfw(run: Path, out: Path, values: list[float], seed: int, n: int = 48) -> None:
    """An lfw-faces run: dlib's recognition of the person at each strength, a plot and a row of faces each."""
    import torch

    from legato.evaluation.images import save_grid
    from legato.files import atomic_write_json
    from legato.lfwfaces.unlearn import _dial_plot, sweep

    images: list = []
    rows = sweep(run, values, n=n, seed=seed, progress=True, images=images)
    from scipy.stats import spearmanr

    rho = float(spearmanr(values, [r["recognition"] for r in rows]).statistic) if len(values) > 2 else None
    result = {"generator": "lfw-faces", "run": str(run), "judge": "dlib (lfw-faces reference)", "points": rows,
              "spearman": None if rho != rho else rho}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", result)
    (out / "sweep.png").write_bytes(_dial_plot(rows, f"forgetting dial ({run.name})"))
    save_grid(torch.cat(images), out / "fade_strip.png", nrow=images[0].shape[0])
    typer.echo(f"wrote {out}/sweep.json, sweep.png, fade_strip.png; recognised {rows[0]['recognition']:.0%} → "
               f"{rows[-1]['recognition']:.0%}, Spearman ρ = {'—' if result['spearman'] is None else f'{rho:.3f}'}")


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep_cmd(
        adapter: Path = run_options.ADAPTER,
        out: Path = typer.Option(..., "--out", "-o", help="Folder for sweep.json, sweep.png, fade_strip.png."),
        generator: str = run_options.GENERATOR,
        identity: str = run_options.IDENTITY,
        target_index: int = run_options.TARGET_INDEX,
        strengths: str = typer.Option("0:1:11", help="start:stop:count or a comma list, within [0, 1]."),
        identity_model: str = run_options.IDENTITY_MODEL,
        n_random: int = typer.Option(32, help="Random latents for id_preservation at each strength."),
        n_views: int = typer.Option(5, help="Views per latent (5 of the ±π/12 arc keep an 11-point sweep quick)."),
        seed: int = run_options.SEED,
    ) -> None:
        """Sweep the adapter strength and show the forgotten face fading out."""
        import torch

        from legato.cli.evaluate import load_identity_model, load_pair, load_target
        from legato.errors import InputError
        from legato.evaluation.sweep import run_sweep, save_fade_strip, save_sweep_plot
        from legato.files import atomic_write_json

        values = parse_strengths(strengths)
        from legato.lfwfaces.unlearn import run_folder_of

        if (run := run_folder_of(adapter)) is not None:
            _sweep_lfw(run, out, values, seed)
            return
        torch.manual_seed(seed)
        pair = load_pair(generator, adapter)
        if pair.dial is None:
            raise InputError(f"{adapter} holds fully fine-tuned weights, which have no strength to sweep")
        ws, held, description = load_target(adapter, identity, pair.source, target_index, seed)
        result = run_sweep(pair.source, pair.unlearned, pair.dial, ws, held, values,
                           identity_model=load_identity_model(identity_model, pair.source), n_random=n_random,
                           n_views=n_views, seed=seed, progress=True)
        result = {**result, "generator": generator, "adapter": str(adapter), "identity": description}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "sweep.json", result)
        save_sweep_plot(result, out / "sweep.png")
        save_fade_strip(pair.unlearned, pair.dial, ws, values, out / "fade_strip.png")
        rho = result["spearman"]
        typer.echo(f"wrote {out}/sweep.json, sweep.png, fade_strip.png; id_target "
                   f"{result['points'][0]['id_target']:.3f} → {result['points'][-1]['id_target']:.3f}, "
                   f"Spearman ρ = {'—' if rho is None else f'{rho:.3f}'}, monotone: {result['monotone']}")
