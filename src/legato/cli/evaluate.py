"""`legato evaluate` — the forgetting metrics of a finished run, as JSON; and the loaders the
`generate` and `sweep` commands share (generator + adapter folder → source and unlearned generators)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import typer

from legato.cli import run_options


@dataclass
class Pair:
    source: object  # the frozen base Generator
    unlearned: object  # the base with adapters attached, or a fine-tuned copy
    dial: object | None  # the strength dial (adapter set or LoRA set); None for fine-tuned weights


def load_pair(generator_spec: str, adapter_dir: Path | None, strength: float | None = None) -> Pair:
    """The source generator and its unlearned counterpart read from `adapter_dir` (None: both the base)."""
    from legato.errors import InputError
    from legato.generators import load
    from legato.unlearning.methods import load_result
    from legato.unlearning.run import freeze

    generator = freeze(load(generator_spec))
    source = freeze(copy.deepcopy(generator))  # copied before any adapter is attached
    if adapter_dir is None:
        if strength is not None:
            raise InputError("--strength needs --adapter")
        return Pair(source, generator, None)
    result = load_result(Path(adapter_dir), generator)
    if result.dial is None:
        if strength is not None and strength != 1.0:
            raise InputError(f"{adapter_dir} holds fully fine-tuned weights ({result.method}), which have no "
                             "strength dial")
    elif strength is not None:
        result.dial.strength = strength
    return Pair(source, generator, result.dial)


def load_target(adapter_dir: Path | None, identity: str | None, generator, target_index: int = 0,
                seed: int = 0):
    """(target ws, held-out ws or None, description) from `--identity` or the run's stored latent."""
    if identity is not None:
        from legato.identity.framing import photo_loader
        from legato.inversion.sources import resolve_identity

        ident = resolve_identity(identity, generator, target_index=target_index, seed=seed,
                                 load_photo=photo_loader(generator))
        return ident.ws, ident.held_out_ws, ident.description
    from legato.errors import InputError
    from legato.unlearning.run_folder import PEOPLE_FILE, read_people

    path = None if adapter_dir is None else Path(adapter_dir) / PEOPLE_FILE
    if path is None or not path.is_file():
        raise InputError(f"no --identity given and no {PEOPLE_FILE} in the adapter folder; "
                         "give --identity seed:N | PHOTO | FOLDER | latent:FILE | person:N")
    tensors = read_people(adapter_dir)
    device = generator.w_avg.device
    held = tensors.get("held_out_ws")
    return tensors["ws"].float().to(device), None if held is None else held.float().to(device), \
        f"the identity stored in {path}"


def load_identity_model(spec: str | None, source, detector=None):
    """The identity model `spec` names (None: the generator's judge, chosen by `evaluate`: its independent
    judge where it has one, else its own model); with `detector` (`--judge-crop mtcnn:DIR`,
    `identity.cropped.load_judge_crop`) judging on its MTCNN crops."""
    from legato.evaluation.metrics import _optional_identity_model
    from legato.identity.cropped import with_judge_crop

    if spec is None:
        return with_judge_crop(_optional_identity_model(source, None), detector) if detector is not None else None
    from legato.identity import load
    from legato.unlearning.run import freeze

    return with_judge_crop(freeze(load(spec)), detector)


def print_metrics(metrics: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("metric", "value", "95% interval", "n"):
        table.add_column(col)
    for key in ("id_target", "id_others", "id_preservation", "fid_pre", "delta_fid_real"):
        if key not in metrics:
            continue
        v, ci = metrics.get(key), metrics.get(f"{key}_ci95")
        table.add_row(key, "—" if v is None else f"{v:.4f}", "" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]",
                      str(metrics.get(f"{key}_n", "")))
    Console(stderr=True).print(table)


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        adapter: Path = run_options.ADAPTER,
        out: Path = typer.Option(..., "--out", "-o", help="Metrics JSON to write."),
        generator: str = run_options.GENERATOR,
        identity: str = run_options.IDENTITY,
        target_index: int = run_options.TARGET_INDEX,
        strength: float = typer.Option(None, help="Adapter strength in [0, 1]; default: the bundle's own."),
        identity_model: str = run_options.IDENTITY_MODEL,
        judge_crop: str = run_options.JUDGE_CROP,
        inception: Path = typer.Option(None, "--inception",
                                       help="pytorch-fid / torch-fidelity Inception weights for FID features; "
                                            "default: the identity model's features."),
        real_images: Path = typer.Option(None, "--real-images", help="ΔFID_real for a generator without real "
                                         "images of its own (EG3D): a folder of its training images (features "
                                         "cached) or a statistics .npz (mu, sigma)."),
        n_views: int = typer.Option(11, help="Evaluation views per latent (reference: 11)."),
        n_random: int = typer.Option(100, help="Random latents for id_preservation."),
        n_fid: int = typer.Option(1000, help="Samples per FID (0: skip FID)."),
        fid_bootstrap: int = typer.Option(50, help="Bootstrap resamples for the FID intervals (0: none)."),
        batch_size: int = typer.Option(32, help="Images per forward pass."),
        seed: int = run_options.SEED,
    ) -> None:
        """Measure id_target, id_others, id_preservation, fid_pre and delta_fid_real of a run."""
        import torch

        from legato.errors import InputError
        from legato.evaluation.metrics import evaluate
        from legato.files import atomic_write_json
        from legato.identity.cropped import load_judge_crop
        from legato.lfwfaces.unlearn import run_folder_of

        if (run := run_folder_of(adapter)) is not None:  # lfw-faces: dlib judges, at the given strength
            from legato.lfwfaces.unlearn import evaluate_run

            if strength is not None and not 0.0 <= strength <= 1.0:
                raise InputError(f"--strength must lie in [0, 1] (got {strength})")
            metrics = evaluate_run(run, strength=1.0 if strength is None else strength, seed=seed)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out, metrics)
            typer.echo(json.dumps({k: metrics[k] for k in ("recognition_before", "recognition_after",
                                                           "others_recognition_before",
                                                           "others_recognition_after")}))
            typer.echo(json.dumps(metrics["verdicts"], ensure_ascii=False))
            return
        torch.manual_seed(seed)
        detector = load_judge_crop(judge_crop)  # a bad --judge-crop fails before the generator loads
        pair = load_pair(generator, adapter, strength)
        judge = load_identity_model(identity_model, pair.source, detector)
        ws, held, description = load_target(adapter, identity, pair.source, target_index, seed)
        metrics = evaluate(pair.source, pair.unlearned, ws, held, identity_model=judge, n_views=n_views,
                           n_random=n_random, n_fid=n_fid, fid_features=inception, seed=seed,
                           batch_size=batch_size, progress=True, fid_bootstrap=fid_bootstrap,
                           real_reference=real_images)
        metrics = {**metrics, "generator": generator, "adapter": str(adapter), "identity": description,
                   "strength": None if pair.dial is None else pair.dial.strength}
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, metrics)
        print_metrics(metrics, f"legato evaluate: {description}")
        typer.echo(json.dumps({k: metrics[k] for k in ("id_target", "id_preservation", "fid_pre")}))
