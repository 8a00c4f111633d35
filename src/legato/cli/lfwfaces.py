"""`legato lfw-faces …`: the real-face world — train its generator, sample it, list its people, build the
judge's reference."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    lf_app = typer.Typer(help="The lfw-faces world (LFW people, a diffusers flow-matching UNet): train, sample, "
                              "people, reference.", no_args_is_help=True)

    @lf_app.command("train")
    def train_cmd(
        out: Path = typer.Option(None, "--out", help="The model folder to write (default: the package's)."),
        lfw: Path = typer.Option(None, "--lfw", help="The LFW folder (default ../shared/data/lfw or $LEGATO_LFW)."),
        seconds: float = typer.Option(7800.0, "--seconds", help="Wall-clock budget of this cycle."),
        state: Path = typer.Option(None, "--state", help="Resume state folder (default: OUT.train)."),
        init_from: Path = typer.Option(None, "--init-from",
                                       help="Start from a shipped folder when there is no state file."),
        lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate."),
        batch_size: int = typer.Option(32, "--batch-size"),
        seed: int = typer.Option(0, "--seed"),
        threads: int = typer.Option(1, "--threads", help="torch threads."),
    ) -> None:
        """Train (or resume) the class-conditional flow-matching generator; the photos never ship."""
        import json

        import torch

        from legato.lfwfaces.train import FaceFlowTrainConfig, train
        from legato.lfwfaces.world import WORLD_FOLDER

        torch.set_num_threads(threads)
        meta = train(out or WORLD_FOLDER, FaceFlowTrainConfig(seconds=seconds, lr=lr, batch_size=batch_size,
                                                              seed=seed),
                     lfw_root=lfw, state_dir=state, init_from=init_from)
        typer.echo(json.dumps({k: v for k, v in meta.items() if k != "people"}, indent=1))

    @lf_app.command("sample")
    def sample_cmd(
        people: list[str] = typer.Argument(..., help="Names (e.g. Tony_Blair) or class indices."),
        out: Path = typer.Option(Path("lfw_faces.png"), "--out", help="The PNG grid to write (a row a person)."),
        n: int = typer.Option(8, "--n", help="Samples per person."),
        generator: Path = typer.Option(None, "--generator", help="An lfw-faces folder (default: the shipped)."),
        steps: int = typer.Option(None, "--steps", help="Euler steps (default: the world's)."),
        guidance: float = typer.Option(None, "--guidance", help="Classifier-free guidance (1: none)."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Sample faces of named people into a grid."""
        import torch
        import torch.nn.functional as F

        from legato.evaluation.images import save_grid
        from legato.lfwfaces.world import GUIDANCE, STEPS, load_world, sample

        world = load_world(generator)
        labels = [int(p) if p.isdigit() else world.label_of(p) for p in people]
        rows = [sample(world, torch.full((n,), lab), steps=steps or STEPS,
                       guidance=GUIDANCE if guidance is None else guidance, seed=seed + lab)
                for lab in labels]
        save_grid(F.interpolate(torch.cat(rows), scale_factor=3, mode="nearest"), out, nrow=n)
        typer.echo(f"wrote {out}")

    @lf_app.command("people")
    def people_cmd(generator: Path = typer.Option(None, "--generator")) -> None:
        """List the world's people with their class index."""
        import json

        from legato.errors import InputError
        from legato.lfwfaces.world import WORLD_FOLDER

        path = Path(generator or WORLD_FOLDER) / "legato_world.json"
        try:
            names = json.loads(path.read_text())["people"]
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"{path}: no people list ({e})") from e
        for i, name in enumerate(names):
            typer.echo(f"{i:3d}  {name}")

    @lf_app.command("reference")
    def reference_cmd(
        lfw: Path = typer.Option(None, "--lfw", help="The LFW folder (default ../shared/data/lfw)."),
        out: Path = typer.Option(None, "--out", help="Where to write it (default: the shipped file)."),
    ) -> None:
        """Rebuild the dlib judge's reference (centroids, FID features) from the held-out photos."""
        from legato.lfwfaces import judge as J
        from legato.lfwfaces.data import prepare

        faceset = prepare(lfw)
        centroids, real, summary = J.build_reference(faceset)
        J.save_reference(out or J.REFERENCE_FILE, centroids, real, faceset.names, summary)
        typer.echo(f"wrote {out or J.REFERENCE_FILE} ({summary['held_out_photos']} held-out photos, "
                   f"face found in {summary['face_found']:.1%})")

    app.add_typer(lf_app, name="lfw-faces")
