"""`legato flow train | sample | table` — the class-conditional flow on scikit-learn's digits (forgetting a
class is `legato unlearn --generator digits-flow --forget-class N`, the one forgetting command)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _load_model(weights: str | None, adapter: str | None, strength: float):
    from legato.errors import InputError
    from legato.flows.weights import load_flow
    from legato.unlearning.methods import load_result

    model = load_flow(weights)
    if adapter is None:
        return model
    loaded = load_result(Path(adapter), model)  # an adapter bundle or fine-tuned weights, as for the GANs
    if loaded.dial is not None:
        loaded.dial.strength = strength
    elif strength != 1.0:
        raise InputError(f"--strength applies to adapter bundles; {adapter} holds fine-tuned weights (no dial)")
    return model.eval()


def register(app: typer.Typer) -> None:
    flow_app = typer.Typer(
        help="Class-conditional flow matching on scikit-learn's 8×8 digits.", no_args_is_help=True
    )

    @flow_app.command("train")
    def train(
        out: Path = typer.Option(
            ..., "--out", "-o", help="Folder for digits_flow.safetensors and digits_classifier.safetensors."
        ),
        only: str = typer.Option("both", help="both | flow | classifier"),
        steps: int = typer.Option(2400, help="Flow training steps (shipped weights: 2,400)."),
        seed: int = typer.Option(0, help="Random seed."),
        work_dir: Path = typer.Option(
            None,
            help="Checkpoint and log folder (default OUT/digits_flow.work); "
            "an existing checkpoint there is resumed.",
        ),
    ) -> None:
        """Train the evaluation classifier and the flow UNet by the project's recipe."""
        from dataclasses import asdict

        import torch

        from legato.errors import InputError
        from legato.flows.classifier import ClassifierTrainConfig, train_classifier
        from legato.flows.train import FlowTrainConfig, train_flow
        from legato.flows.weights import save_weights

        if only not in ("both", "flow", "classifier"):
            raise InputError(f"--only must be both, flow or classifier (got {only!r})")
        torch.set_num_threads(1)
        out.mkdir(parents=True, exist_ok=True)
        if only in ("both", "classifier"):
            model, summary = train_classifier(ClassifierTrainConfig(seed=seed))
            save_weights(
                model,
                out / "digits_classifier.safetensors",
                "digits-classifier",
                asdict(model.config),
                extra=summary,
            )
            typer.echo(
                f"classifier: held-out accuracy {100 * summary['held_out_accuracy']:.1f}% "
                f"({summary['wall_s']:.0f} s)"
            )
        if only in ("both", "flow"):
            summary = train_flow(
                out / "digits_flow.safetensors",
                FlowTrainConfig(steps=steps, seed=seed),
                work_dir=work_dir or out / "digits_flow.work",
            )
            typer.echo(
                f"flow: {summary['steps']} steps, final loss {summary['final_loss']:.4f} "
                f"({summary['wall_s']:.0f} s)"
            )

    @flow_app.command("sample")
    def sample_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="PNG grid to write (one row per class)."),
        per_class: int = typer.Option(10, help="Samples per class in the grid."),
        classes: str = typer.Option("0,1,2,3,4,5,6,7,8,9", help="Comma-separated classes, one row each."),
        seed: int = typer.Option(0, help="Random seed."),
        steps: int = typer.Option(10, help="Solver steps."),
        solver: str = typer.Option("midpoint", help="euler | midpoint | rk4 | dopri5"),
        guidance: float = typer.Option(1.0, help="Classifier-free guidance scale (1: none)."),
        weights: str = typer.Option(None, help="Flow weights (default: the shipped ones)."),
        adapter: str = typer.Option(None, help="An unlearning run's adapter/ folder to apply."),
        strength: float = typer.Option(1.0, help="Adapter strength in [0, 1]."),
        evaluate: int = typer.Option(
            0, help="Also sample N per class and print the classifier's per-class accuracy as JSON."
        ),
        classifier: str = typer.Option(None, help="Classifier weights for --evaluate (default: shipped)."),
    ) -> None:
        """Sample a grid from the flow (optionally with unlearning adapters) and optionally score it."""
        import torch

        from legato.errors import InputError
        from legato.files import atomic_write_bytes
        from legato.flows.data import check_class
        from legato.flows.report import grid_image, png_bytes
        from legato.flows.sampling import SamplerConfig, class_labels, sample

        torch.set_num_threads(1)
        try:
            rows = [check_class(int(c)) for c in classes.split(",") if c.strip()]
        except ValueError as e:
            raise InputError(f"--classes must be comma-separated integers 0..9 (got {classes!r})") from e
        if per_class < 1:
            raise InputError("--per-class must be at least 1")
        model = _load_model(weights, adapter, strength)
        scfg = SamplerConfig(method=solver, steps=steps, guidance=guidance)
        labels = class_labels(per_class, rows)
        images = sample(model, labels, seed=seed, config=scfg)
        atomic_write_bytes(out, png_bytes(grid_image([images[labels == c] for c in rows])))
        typer.echo(f"wrote {out}")
        if evaluate > 0:
            from legato.flows.metrics import flow_quality
            from legato.flows.weights import load_classifier

            q = flow_quality(model, load_classifier(classifier), per_class=evaluate, seed=seed, sampler=scfg)
            q.pop("images"), q.pop("labels")
            typer.echo(json.dumps(q, indent=2))

    @flow_app.command("table")
    def table_cmd(
        runs: list[Path] = typer.Argument(..., help="Run folders (each with metrics.json)."),
    ) -> None:
        """Print a Markdown table comparing unlearning runs side by side."""
        from legato.errors import InputError
        from legato.flows.report import comparison_table

        metrics = []
        for r in runs:
            p = r / "metrics.json"
            if not p.is_file():
                raise InputError(f"{r} has no metrics.json; pass folders written by `legato unlearn --generator "
                                 "digits-flow`")
            metrics.append(json.loads(p.read_text()))
        typer.echo(comparison_table(metrics), nl=False)

    app.add_typer(flow_app, name="flow")
