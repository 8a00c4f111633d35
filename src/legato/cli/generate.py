"""`legato generate` — a grid of samples (seeds × views), optionally through an adapter at a strength."""

from __future__ import annotations

from pathlib import Path

import typer


def parse_seeds(text: str) -> list[int]:
    """`"0-15"`, `"3"`, `"0,4,8-11"` → the seeds in order (ranges include both ends)."""
    from legato.errors import InputError

    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            if sep and lo:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError as e:
        raise InputError(f"--seeds {text!r}: expected e.g. 0-15 or 0,3,5-8 (non-negative integers)") from e
    if not seeds:
        raise InputError("--seeds is empty")
    if any(s < 0 for s in seeds):
        raise InputError(f"--seeds {text!r}: seeds must be ≥ 0")
    if len(seeds) > 1024:
        raise InputError(f"--seeds {text!r} asks for {len(seeds)} images; at most 1,024 per grid")
    return seeds


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="PNG grid to write (rows: seeds, columns: views)."),
        generator: str = typer.Option("synthfaces", "--generator", "-g",
                                      help="synthfaces | an NVlabs .pkl (StyleGAN2, EG3D); the class-conditional "
                                           "worlds sample with `legato flow sample` / `legato lfw-faces sample`"),
        adapter: Path = typer.Option(None, "--adapter", "-a", help="Adapter folder to apply (OUT/adapter)."),
        strength: float = typer.Option(None, help="Adapter strength in [0, 1]; default: the bundle's own."),
        seeds: str = typer.Option("0-15", help="z seeds, e.g. 0-15 or 0,3,5-8."),
        views: int = typer.Option(1, help="Views per seed (1: the front view)."),
        truncation: float = typer.Option(1.0, help="Truncation ψ (1: none)."),
        compare: bool = typer.Option(False, help="With --adapter: put each seed's source row above its "
                                                 "unlearned row."),
        batch_size: int = typer.Option(32, help="Images per forward pass."),
    ) -> None:
        """Sample the generator (or its unlearned version) for a list of seeds and save a grid."""
        import torch

        from legato.cli.evaluate import load_pair
        from legato.errors import InputError
        from legato.evaluation.images import save_grid

        conditional = {"digits-flow": "legato flow sample --out grid.png [--adapter RUN/adapter]",
                       "lfw-faces": "legato lfw-faces sample NAME … --out grid.png"}
        if generator in conditional or (Path(generator) / "legato_world.json").is_file():
            command = conditional.get(generator, conditional["lfw-faces"] + " --generator " + generator)
            raise InputError(f"{generator} is class-conditional (a grid per class, not per z seed): `{command}`")
        seed_list = parse_seeds(seeds)
        if views < 1:
            raise InputError("--views must be ≥ 1")
        if compare and adapter is None:
            raise InputError("--compare needs --adapter")
        pair = load_pair(generator, adapter, strength)
        gen = pair.unlearned
        device = gen.w_avg.device
        cams = gen.views(views).to(device)
        z = torch.stack([torch.randn(gen.z_dim, generator=torch.Generator().manual_seed(s)) for s in seed_list])
        rows = []
        with torch.no_grad():
            ws = gen.mapping(z.to(device), truncation_psi=truncation)
            w, c = ws.repeat_interleave(views, dim=0), cams.repeat(len(seed_list), 1)
            models = [pair.source, gen] if compare else [gen]
            for i in range(0, w.shape[0], views * max(1, batch_size // views)):
                j = i + views * max(1, batch_size // views)
                chunk = [m.synthesis(w[i:j], c[i:j]) for m in models]
                for k in range(0, chunk[0].shape[0], views):  # seed by seed: source row, unlearned row
                    rows += [x[k:k + views] for x in chunk]
        images = torch.cat(rows)
        nrow = views if views > 1 or compare else min(8, len(seed_list))
        if compare and views == 1:
            nrow = 2  # one seed per row: source | unlearned
        save_grid(images, out, nrow=nrow)
        what = "source" if adapter is None else f"adapter {adapter} at strength {pair.dial.strength:g}" \
            if pair.dial is not None else f"fine-tuned weights {adapter}"
        typer.echo(f"wrote {out}: {len(seed_list)} seeds × {views} views ({what})")
