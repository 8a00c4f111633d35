"""`legato synthfaces train|sample` — reproduce the shipped SynthFaces models, and look at the world."""

from __future__ import annotations

import json
from pathlib import Path

import typer

TARGETS = ("identity", "judge", "inverter", "generator", "all")
FILES = {
    "identity": "identity.safetensors",
    "judge": "judge.safetensors",
    "generator": "generator.safetensors",
    "inverter": "inverter.safetensors",
}


def _train_one(target: str, out_dir: Path, seed: int, steps: int | None, log_dir: Path | None,
               generator_options: dict | None = None) -> dict:
    import torch

    torch.manual_seed(seed)
    out_path = out_dir / FILES[target]
    log_path = (log_dir / f"{target}.jsonl") if log_dir else None
    if target == "identity":
        from legato.synthfaces.train_identity import train
    elif target == "judge":  # the identity recipe with the judge's network, augmentation and people
        from legato.synthfaces.train_identity import JUDGE_CONFIG, IdentityTrainConfig
        from legato.synthfaces.train_identity import train as train_identity

        return train_identity(out_path, seed=seed, steps=steps, log_path=log_path,
                              config=IdentityTrainConfig(**JUDGE_CONFIG))
    elif target == "inverter":
        from legato.synthfaces.train_inverter import train
    else:
        try:
            from legato.synthfaces.train_generator import train
        except ImportError as e:
            from legato.errors import InputError

            raise InputError(f"the generator recipe is not available in this installation ({e})") from e
        return train(out_path, seed=seed, steps=steps, log_path=log_path, **(generator_options or {}))
    return train(out_path, seed=seed, steps=steps, log_path=log_path)


def _generator_shape(grow_from: Path | None, widths: str | None, coords: str | None) -> dict:
    """`grow_from` and `config` for the generator recipe from the CLI's --grow-from/--widths/--coords."""
    if grow_from is None and widths is None and coords is None:
        return {}
    from dataclasses import replace

    from legato.errors import InputError
    from legato.synthfaces.generator import GeneratorConfig, load_generator

    base = load_generator(path=grow_from).config if grow_from is not None else GeneratorConfig()
    channels = dict(base.channels)
    try:
        for item in (widths or "").split(","):
            if item.strip():
                res, ch = item.split(":")
                channels[int(res)] = int(ch)
        coord_res = [int(r) for r in coords.split(",") if r.strip()] if coords else list(base.coord_resolutions)
    except ValueError as e:
        raise InputError(f"--widths takes 'RES:CHANNELS,...' and --coords 'RES,...' ({e})") from e
    if set(channels) != set(base.channels) or not set(coord_res) <= set(channels) - {4}:
        raise InputError(f"resolutions must be among {sorted(base.channels)} (coordinates: not 4)")
    return {"grow_from": grow_from, "config": replace(base, channels=channels, coord_resolutions=coord_res)}


def _generator_grid(seeds: list[int], n_views: int, seed: int):
    import torch

    from legato.synthfaces import load_generator
    from legato.synthfaces.params import identity_from_seed, params_to_z, random_nuisance
    from legato.synthfaces.world import grid_cameras, photo_generator

    gen = load_generator()
    cams = grid_cameras(n_views)
    rows = []
    with torch.no_grad():
        for s in seeds:
            nui = random_nuisance(1, photo_generator(s, seed))
            z = params_to_z(torch.cat([identity_from_seed(s)[None], nui], 1))
            ws = gen.mapping(z).expand(n_views, -1, -1)
            rows.append(gen.synthesis(ws, cams))
    return torch.stack(rows)


def register(app: typer.Typer) -> None:
    sf_app = typer.Typer(
        help="The embedded SynthFaces world: train its models, sample grids.", no_args_is_help=True
    )

    @sf_app.command("train")
    def train_cmd(
        target: str = typer.Argument(..., help="identity | judge | inverter | generator | all"),
        out: Path = typer.Option(
            None, "--out", help="Output folder (default: the package's weights folder)."
        ),
        seed: int = typer.Option(None, "--seed", help="Random seed (default 0; the judge: 101)."),
        steps: int = typer.Option(
            None, "--steps", help="Override the recipe's number of steps (quick runs)."
        ),
        log_dir: Path = typer.Option(None, "--log-dir", help="Write per-step JSON lines logs here."),
        seconds: float = typer.Option(None, "--seconds", help="generator: wall-clock budget of the first cycle "
                                      "(default 3,300)."),
        extend_seconds: float = typer.Option(None, "--extend-seconds", help="generator: continue a finished run "
                                             "(its .ckpt.pt beside the output) with a second cycle this long."),
        edge_weight: float = typer.Option(0.0, "--edge-weight", help="generator: weight of the image-gradient "
                                          "L1 term (the shipped second cycle: 1)."),
        threads: int = typer.Option(None, "--threads", help="generator: torch threads (the shipped runs: 1)."),
        grow_from: Path = typer.Option(None, "--grow-from", help="generator: start from this generator file, "
                                       "grown to --widths/--coords (the same images at the start)."),
        widths: str = typer.Option(None, "--widths", help="generator: channels per resolution to change, e.g. "
                                   "'64:32' (the others keep the default or the grown file's)."),
        coords: str = typer.Option(None, "--coords", help="generator: resolutions whose convolutions see "
                                   "coordinate channels, e.g. '16,32,64'."),
        lr: float = typer.Option(None, "--lr", help="generator: peak learning rate of the cycle this command "
                               "runs (first: 2e-3; --extend-seconds: 1e-3)."),
        region_weight: float = typer.Option(0.0, "--region-weight", help="generator: extra loss weight inside "
                                            "the eye and mouth regions (the shipped recipe: 4)."),
        mask_weight: float = typer.Option(0.0, "--mask-weight", help="generator: weight of the auxiliary "
                                          "feature-mask head's loss (training only; 0: none)."),
        adversarial_weight: float = typer.Option(0.0, "--adversarial-weight", help="generator: weight of the "
                                                 "patch critic's term (training only; 0: none)."),
        feature_weight: float = typer.Option(0.0, "--feature-weight", help="generator: extra loss weight on the "
                                             "pixels of irises, pupils, brows, lips and glasses rims (0: none)."),
        colour_weight: float = typer.Option(0.0, "--colour-weight", help="generator: weight of the term on the "
                                            "mean colour of irises, lips and glasses rims (0: none)."),
        outline_weight: float = typer.Option(0.0, "--outline-weight", help="generator: weight of the term on the "
                                             "mean colour of lips, teeth and glasses rims and of a ring just "
                                             "outside them (0: none)."),
        mouth_weight: float = typer.Option(0.0, "--mouth-weight", help="generator: extra loss weight inside "
                                           "the mouth region alone, on top of --region-weight (0: none)."),
        mouth_critic_weight: float = typer.Option(0.0, "--mouth-critic-weight", help="generator: weight of a "
                                                  "second patch critic that sees only a crop around each mouth "
                                                  "(training only; 0: none)."),
    ) -> None:
        """Train SynthFaces models with the project's recipes and write them as safetensors."""
        from legato.errors import InputError
        from legato.synthfaces.identity_encoder import WEIGHTS_DIR

        if target not in TARGETS:
            raise InputError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
        out_dir = Path(out) if out is not None else WEIGHTS_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
        order = ["identity", "judge", "generator", "inverter"] if target == "all" else [target]
        results = {}
        for t in order:
            typer.echo(f"training {t} → {out_dir / FILES[t]}")
            gen_opts = {"seconds": seconds, "extend_seconds": extend_seconds, "edge_weight": edge_weight,
                        "threads": threads, "region_weight": region_weight, "mask_weight": mask_weight,
                        "adversarial_weight": adversarial_weight, "feature_weight": feature_weight,
                        "colour_weight": colour_weight, "outline_weight": outline_weight,
                        "mouth_weight": mouth_weight, "mouth_critic_weight": mouth_critic_weight,
                        **_generator_shape(grow_from, widths, coords),
                        # --lr sets the peak of the cycle this command runs: the first, or the extension
                        **({("extend_lr" if extend_seconds else "lr"): lr} if lr else {})}
            from legato.synthfaces.train_identity import JUDGE_SEED

            t_seed = seed if seed is not None else (JUDGE_SEED if t == "judge" else 0)
            results[t] = _train_one(t, out_dir, t_seed, steps, log_dir, gen_opts)
            shown = {k: v for k, v in results[t].items() if k != "config"}
            typer.echo(json.dumps(shown, indent=1, default=str))

    @sf_app.command("sample")
    def sample_cmd(
        out: Path = typer.Option(..., "--out", help="PNG file to write."),
        identities: int = typer.Option(8, "--identities", help="Number of people (rows)."),
        views: int = typer.Option(5, "--views", help="Number of yaws in ±30° (columns)."),
        first: int = typer.Option(0, "--first", help="Identity seed of the first row."),
        seed: int = typer.Option(0, "--seed", help="Seed of the per-person nuisance (expression, light...)."),
        source: str = typer.Option("renderer", "--source", help="renderer | generator"),
        scale: int = typer.Option(2, "--scale", help="Pixel upscaling of the PNG."),
    ) -> None:
        """Write an identities × views grid of the renderer (or of the trained generator)."""
        from legato.errors import InputError
        from legato.synthfaces.world import identity_grid, save_grid

        if identities < 1 or views < 1:
            raise InputError("--identities and --views must be at least 1")
        seeds = list(range(first, first + identities))
        if source == "renderer":
            grid = identity_grid(seeds, views, seed=seed)
        elif source == "generator":
            grid = _generator_grid(seeds, views, seed)
        else:
            raise InputError(f"unknown --source {source!r}; choose renderer or generator")
        path = save_grid(grid, out, scale=scale)
        typer.echo(f"wrote {path} ({identities} identities × {views} views, {source})")

    app.add_typer(sf_app, name="synthfaces")
