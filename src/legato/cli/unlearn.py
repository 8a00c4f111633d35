"""`legato unlearn` and `legato demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from legato.cli import run_options

DEMO_PERSON = "person:1000003"  # a fixed held-out SynthFaces person (seeds ≥ 1,000,000 are never trained on)


def _print_table(metrics: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from legato.unlearning.run import summary_rows

    table = Table(title=f"legato: {metrics.get('identity', {}).get('description', '')}", show_header=False)
    for k, v in summary_rows(metrics):
        table.add_row(k, v)
    console = Console()
    console.print(table)
    console.print(f"report: {out / 'report.html'}   adapter: {out / 'adapter'}")


def _unlearn_lfw(generator: str, identity: str | None, out: Path, given: dict, overwrite: bool,
                 resume: bool = False) -> None:
    """lfw-faces: forget a named person of the class-conditional flow (docs/reference/lfw-faces.md); the
    settings it shares with every backend keep their names (`unlearning.options.backend_config`)."""
    from legato.errors import InputError
    from legato.lfwfaces.erase import EraseConfig
    from legato.lfwfaces.unlearn import run
    from legato.unlearning.options import backend_config

    if identity is None:
        raise InputError("--identity is required: a name of `legato lfw-faces people` (e.g. Colin_Powell), or "
                         "@FILE with one name per line")
    config = backend_config(EraseConfig, given)
    metrics = run(out, identity, config, generator=None if generator == "lfw-faces" else generator,
                  overwrite=overwrite, resume=resume)
    who = metrics["person"] or f"{len(metrics['people'])} people"
    typer.echo(f"{who}: recognised in {metrics['recognition_before']:.0%} of samples before, "
               f"{metrics['recognition_after']:.0%} after (95% CI {metrics['recognition_after_ci'][0]:.0%}–"
               f"{metrics['recognition_after_ci'][1]:.0%}); the others {metrics['others_recognition_before']:.0%} "
               f"→ {metrics['others_recognition_after']:.0%}; dlib finds a face in "
               f"{metrics['face_found_after']:.0%} of the forgotten name's samples")
    for rule, verdict in metrics["verdicts"].items():
        typer.echo(f"  {verdict:>12}  {rule}")
    typer.echo(f"run folder: {out} (metrics.json, forgotten_sweep.png, dial.png)")


def _unlearn_digits(out: Path, forget_class: int | None, given: dict, resume: bool, overwrite: bool) -> None:
    """digits-flow: forget a digit class (docs/reference/flows.md); options left out take the flow's own defaults."""
    import torch

    from legato.errors import InputError
    from legato.flows.unlearn import FlowUnlearnConfig, run
    from legato.unlearning.options import backend_config

    if forget_class is None:
        raise InputError("--generator digits-flow needs --forget-class N (a digit, 0–9)")
    config = backend_config(FlowUnlearnConfig, given)
    torch.set_num_threads(1)  # the digits model is small: one thread is faster than two here
    m = run(out, forget_class, config=config, resume=resume, overwrite=overwrite)
    typer.echo(f"forgotten class {forget_class}: {m['teacher']['forget_acc']:.0%} → {m['unlearned']['forget_acc']:.0%}"
               f" of its samples read as it; retained classes {m['teacher']['retain_acc']:.1%} → "
               f"{m['unlearned']['retain_acc']:.1%}; trained {m['trained_fraction']:.2%} of the UNet")
    for name, ok in m["checks"].items():
        typer.echo(f"  {'✔' if ok else '✘'} {name}")
    typer.echo(f"report: {out / 'report.html'}   adapter: {out / 'adapter'}")


# `legato unlearn --help` in panels, so that sixty options read as seven short lists
UNLEARN_PANELS = {
    "Input": "identity generator target_index forget_class extend",
    "Method": "method iterations lr preset target distance alpha_max n_adjacent n_global refine_steps trajectory "
              "trajectory_site reduction training_camera identity_crop perceptual lora_rank salun_keep "
              "targets_per_step early_stop stop_every stop_patience stop_consolidate",
    "Loss weights": "lambda_feature lambda_perceptual lambda_identity lambda_local lambda_adjacency lambda_global "
                    "lambda_trajectory lambda_gate",
    "Adapters": "hidden field gate_hidden gate_space gate_floor gate_positives t_end step_size solver dial "
                "dial_crossing dial_calibration",
    "Evaluation": "identity_model judge_model judge_crop n_random n_fid inception real_images eval_every",
    "Output": "out resume overwrite log_every checkpoint_every",
    "Compute": "device rendering_resolution ray_chunk gradient_checkpointing micro_batch seed",
}


def _set_panels(command, panels: dict[str, str]) -> None:
    """Put each option of `command` into its help panel (every option must have one)."""
    import inspect

    where = {name: panel for panel, names in panels.items() for name in names.split()}
    for name, parameter in inspect.signature(command).parameters.items():
        if name not in where:
            raise RuntimeError(f"option {name!r} of {command.__name__} has no help panel")
        parameter.default.rich_help_panel = where[name]


def register(app: typer.Typer) -> None:
    @app.command("unlearn")
    def unlearn_cmd(
        identity: str = typer.Option(None, "--identity", "-i",
                                     help="(required) seed:N | PHOTO | FOLDER of photos | latent:FILE | person:N | "
                                          "ood-person:N | "
                                          "@FILE (several people: one of those per line, forgotten by one set)"),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder to create (required)."),
        generator: str = typer.Option("synthfaces", "--generator", "-g",
                                      help="synthfaces | digits-flow | lfw-faces | path to an NVlabs .pkl or an "
                                           "lfw-faces folder"),
        method: str = typer.Option("legato", help="legato | guide | residual | lora | salun | baseline "
                                   "(digits-flow: legato | finetune; lfw-faces: legato | residual | finetune | "
                                   "lora | embedding)"),
        iterations: int = typer.Option(None, "--iterations", "--iters", help="Training iterations (default: the "
                                       "backend's: 1,000 as the reference on the GANs and SynthFaces, 300 on "
                                       "digits-flow, 100 on lfw-faces)."),
        identity_model: str = typer.Option(None, "--identity-model",
                                           help="Identity model for the ID loss and metrics (dlib | arcface:PATH | "
                                                "curricularface:PATH | synthfaces); default: the backend's own."),
        judge_model: str = typer.Option(None, "--judge-model",
                                        help="Identity model that judges the result (ID, ID_others, preservation, "
                                             "FID features); default: the backend's independent judge (SynthFaces: "
                                             "synthfaces-judge), else the loss's --identity-model, which the report "
                                             "then marks self-judged; the papers: CurricularFace."),
        judge_crop: str = typer.Option(None, "--judge-crop", help=run_options.JUDGE_CROP_HELP),
        lr: float = typer.Option(None, help="Adam learning rate; default: the backend's recommendation for the "
                                 "method (SynthFaces adapters and LoRA 0.001), else the reference's 1e-4."),
        target: str = typer.Option(None, help="UFO target: extra (w_avg − d·unit(w_u − w_avg)) | average | "
                                   "extra-projected (extra moved to the nearest latent the mapping network makes); "
                                   "default: the backend's recommendation, else extra."),
        distance: str = typer.Option(None, help="d: absolute (30, the reference in EG3D's W) or relative (1x); "
                                     "default: the backend's recommendation, else 30."),
        alpha_max: str = typer.Option(None, "--alpha-max", "--alpha", help="Max adjacency offset α: absolute (15, "
                                      "the reference) or relative (0.25x); default: the backend's "
                                      "recommendation, else 15."),
        n_adjacent: int = typer.Option(None, help="Adjacency latents per iteration (reference: 2)."),
        n_global: int = typer.Option(None, help="Random latents per iteration for global preservation "
                                     "(reference: 2)."),
        target_index: int = typer.Option(0, help="Which photo of a folder is forgotten; the others are held out."),
        refine_steps: int = typer.Option(None, help="Optimisation steps refining a photo's inverted latent; "
                                         "default: the backend's recommendation, else 0."),
        hidden: int = typer.Option(None, help="Adapter field hidden channels; default: the backend's "
                                   "recommendation (SynthFaces 64), else the reference's 256."),
        field: str = typer.Option(None, help="Adapter vector field: conv1x1 (the reference: 1×1 convs) | context "
                                  "(plus the image's mean) | gated (switched per sample by an MLP on the site's "
                                  "latent) | keyed (switched by the latent's distance to the forgotten ones; "
                                  "SynthFaces' default) | unet (3×3 convs, group norm; lfw-faces' default) | "
                                  "unet-emb (unet told the UNet block's embedding). Default: the backend's, else "
                                  "conv1x1."),
        gate_hidden: int = typer.Option(None, "--gate-hidden", help="--field gated: the gate MLP's width "
                                        "(default: --hidden)."),
        gate_space: str = typer.Option(None, "--gate-space", help="--field keyed: measure the distance to "
                                       "the forgotten latents in the latent itself (latent), after a linear map "
                                       "fitted to the identity model (identity: reaches the person's other "
                                       "photos), or between identity embeddings an MLP predicts from the latent "
                                       "(embedding: the same reach, fewer lookalike strangers); default: SynthFaces "
                                       "embedding, else latent."),
        gate_floor: float = typer.Option(None, "--gate-floor", help="--field keyed: gate openness below this "
                                         "is 0, so faces far from every forgotten one are exactly the source's "
                                         "(default: SynthFaces 0.15, else 0)."),
        gate_positives: str = typer.Option(None, "--gate-positives", help="--field gated: open the gate "
                                           "for the forgotten latents (targets, the default) or for them and their "
                                           "adjacency latents (neighbourhood)."),
        t_end: float = typer.Option(None, help="ODE time span (reference: 1.6)."),
        step_size: float = typer.Option(None, help="Solver step (reference: 0.4; SynthFaces legato 0.8)."),
        solver: str = typer.Option(None, help="euler | midpoint | rk4 | dopri5 (reference: euler)"),
        dial: str = typer.Option(None, "--dial", help="What the strength dial is trained to mean: time (the "
                                 "reference: the full time span only) | path (intermediate strengths trained "
                                 "towards images along the path to the target, so forgetting falls evenly; "
                                 "SynthFaces' default)."),
        early_stop: bool = typer.Option(None, "--early-stop/--no-early-stop", help="Stop once the loss's identity "
                                        "model sees the person forgotten (other photos too) and strangers kept, "
                                        "twice in a row; --iterations stays the bound (default: on for SynthFaces, "
                                        "off elsewhere and under --preset reference)."),
        stop_every: int = typer.Option(None, "--stop-every", help="--early-stop: steps between checks (10)."),
        stop_patience: int = typer.Option(None, "--stop-patience", help="--early-stop: passes in a row that end "
                                          "training (2)."),
        stop_consolidate: int = typer.Option(None, "--stop-consolidate", help="--early-stop: steps trained on "
                                             "after the check has held (SynthFaces 60, else 0)."),
        dial_crossing: float = typer.Option(None, "--dial-crossing", help="Strength where the person stops being "
                                            "recognised (0.5)."),
        dial_calibration: str = typer.Option(None, "--dial-calibration", help="Map the strength after training: "
                                             "image (SynthFaces; even image change, crossing at --dial-crossing) "
                                             "| loss-model | none (the reference)."),
        lora_rank: int = typer.Option(None, "--lora-rank", help="lora: rank of the updates; default: the rank "
                                      "whose parameter count comes nearest legato's adapters."),
        salun_keep: float = typer.Option(None, "--salun-keep", help="salun: fraction of synthesis weights the "
                                         "saliency mask trains (SalUn: 0.5)."),
        lambda_feature: float = typer.Option(None, help="Feature-MSE weight (reference: 0.01)."),
        lambda_perceptual: float = typer.Option(None, help="Perceptual weight (reference: 1)."),
        lambda_identity: float = typer.Option(None, help="Identity weight (reference: 0.1; SynthFaces 0.5)."),
        lambda_local: float = typer.Option(None, help="Weight of the local (forgetting) term (reference: 1)."),
        lambda_adjacency: float = typer.Option(None, help="Adjacency preservation weight (reference: 1)."),
        lambda_global: float = typer.Option(None, help="Global preservation weight (reference: 1; SynthFaces 10)."),
        lambda_trajectory: float = typer.Option(None, help="Trajectory-consistency weight "
                                                "(reference: 1; lfw-faces 0)."),
        lambda_gate: float = typer.Option(None, help="--field gated/keyed: weight of the gate's membership term "
                                          "(open for the forgotten people, shut for others; default 1)."),
        trajectory: str = typer.Option(None, help="Trajectory term: all (every adapter and latent) | reference "
                                       "(the LEGATO code's: one block, the forgotten latent, last step twice)."),
        trajectory_site: int = typer.Option(None, help="--trajectory reference: which adapter (index; default "
                                            "-2, EG3D's b128)."),
        reduction: str = typer.Option(None, help="Adjacency and global terms over their latents: mean | sum "
                                      "(the reference code)."),
        training_camera: str = typer.Option(None, help="Camera per iteration: views (one of the evaluation "
                                            "views) | continuous (a yaw anywhere in their range, the reference)."),
        preset: str = typer.Option(None, help="reference: the LEGATO/GUIDE code's structure (--reduction sum, "
                                   "--trajectory reference, --training-camera continuous; on EG3D also random "
                                   "noise and its camera pivot), the default for EG3D | none; see "
                                   "docs/reference/eg3d.md."),
        identity_crop: str = typer.Option(None, "--identity-crop", help="How the identity loss frames a face: "
                                          "align (the identity model's own alignment) | reference (the LEGATO/"
                                          "GUIDE code's fixed crop, part of --preset reference; needs ArcFace or "
                                          "CurricularFace)."),
        perceptual: str = typer.Option(None, help="auto (the default) | lpips | identity-features | multiscale-l1"),
        forget_class: int = typer.Option(None, help="digits-flow only: the class to forget."),
        n_random: int = typer.Option(None, help="Random latents for id_preservation (default 100)."),
        n_fid: int = typer.Option(None, help="Samples per FID; default: 5,000 under the reference preset (the "
                                  "papers' protocol; EG3D's default), else 1,000."),
        inception: Path = typer.Option(None, "--inception", help="pytorch-fid / torch-fidelity Inception weights: "
                                       "FID on pool3 features, as the papers; default: the identity model's."),
        real_images: Path = typer.Option(None, "--real-images", help="ΔFID_real for a generator without real "
                                         "images of its own (EG3D): a folder of its training images (features "
                                         "cached) or a statistics .npz (mu, sigma)."),
        eval_every: int = typer.Option(None, help="Collapse-curve evaluation every K steps (default 100)."),
        log_every: int = typer.Option(None, help="Losses into log.jsonl every K steps (default 10)."),
        checkpoint_every: int = typer.Option(None, help="A checkpoint in OUT.partial/ every K steps (default 100)."),
        seed: int = typer.Option(0, help="Random seed."),
        resume: bool = typer.Option(False, help="Continue from OUT.partial/checkpoint.pt."),
        overwrite: bool = typer.Option(False, help="Replace an existing OUT."),
        device: str = typer.Option("cpu", help="cpu | cuda | cuda:N | mps."),
        rendering_resolution: int = typer.Option(None, help="EG3D: neural-rendering resolution (the released "
                                                 "512² models: 128; lower saves memory and time)."),
        ray_chunk: int = typer.Option(None, help="EG3D: rays per renderer pass (bounds memory; same images)."),
        gradient_checkpointing: bool = typer.Option(False, help="EG3D: recompute rendering and super-resolution "
                                                    "in the backward pass (less memory, more time)."),
        extend: Path = typer.Option(None, "--extend", help="A finished run (or its adapter/ folder) to add the "
                                    "people of --identity to; its own people stay in training, so they stay "
                                    "forgotten. Same method and settings as that run."),
        targets_per_step: int = typer.Option(None, "--targets-per-step", help="Several people (@FILE, --extend): "
                                             "how many of them each step trains on (default 4)."),
        micro_batch: int = typer.Option(None, "--micro-batch", help="Render and back-propagate the latents of an "
                                        "iteration N at a time (less memory; same loss and gradients)."),
    ) -> None:
        """Train adapters (or fine-tune, for the baselines) so IDENTITY can no longer be generated."""
        given = dict(locals())  # every option under its own name: the settings' names (unlearning.options)
        from legato.errors import InputError

        if generator == "lfw-faces" or (Path(generator) / "legato_world.json").is_file():
            _unlearn_lfw(generator, identity, out, given, overwrite, resume)
            return
        if generator == "digits-flow":
            _unlearn_digits(out, forget_class, given, resume, overwrite)
            return
        if identity is None:
            raise InputError("--identity is required (seed:N, a photo, a folder, latent:FILE or person:N)")
        from legato.generators import load
        from legato.unlearning import options
        from legato.unlearning.config import UnlearnConfig
        from legato.unlearning.run import unlearn

        UnlearnConfig(method=method).validate()  # an unknown method fails before anything loads
        spec = generator
        eg3d_options = None
        if rendering_resolution is not None or ray_chunk is not None or gradient_checkpointing:
            from legato.generators.eg3d import EG3DOptions

            eg3d_options = EG3DOptions(neural_rendering_resolution=rendering_resolution, ray_chunk=ray_chunk,
                                       gradient_checkpointing=gradient_checkpointing)
        generator = load(spec, device=device, eg3d_options=eg3d_options)
        config = options.config_for(generator, {name: given[name] for name in options.NAMES})
        n_random, n_fid = options.evaluation_sizes(config, n_random, n_fid)
        metrics = unlearn(generator, identity, out, config, target_index=target_index,
                          generator_spec=spec,
                          resume=resume, overwrite=overwrite, n_random=n_random, n_fid=n_fid,
                          identity_model=identity_model, judge_model=judge_model, judge_crop=judge_crop,
                          fid_features=inception, real_images=real_images, extend=extend)
        _print_table(metrics, out)

    _set_panels(unlearn_cmd, UNLEARN_PANELS)

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder (replaced if it exists)."),
        iterations: int = typer.Option(300, help="Training iterations (the reference's 1,000 takes ~3× longer)."),
        n_random: int = typer.Option(30, help="Random people for id_preservation."),
        n_fid: int = typer.Option(300, help="Samples per FID."),
        seed: int = typer.Option(0, help="Random seed."),
        field: str = typer.Option(None, "--field", help="Adapter field (default: SynthFaces' own, keyed; "
                                  "conv1x1: the reference's; see `legato unlearn --help`)."),
        gate_space: str = typer.Option(None, "--gate-space", help="--field keyed: latent | identity | embedding "
                                       "(default: embedding)."),
        gate_floor: float = typer.Option(None, "--gate-floor", help="--field keyed: openness below this is 0 "
                                         "(default: 0.15)."),
        early_stop: bool = typer.Option(None, "--early-stop/--no-early-stop", help="Stop once the loss's "
                                        "identity model sees the person forgotten and strangers kept, twice in "
                                        "a row, then train --stop-consolidate more steps (default: on; "
                                        "`--iterations` stays the upper bound)."),
        stop_consolidate: int = typer.Option(None, "--stop-consolidate", help="--early-stop: steps trained on "
                                             "after the check has held (default: 60)."),
    ) -> None:
        """Forget a held-out SynthFaces person from one photo, evaluate on other photos and random others."""
        from legato.synthfaces import load_generator
        from legato.unlearning.config import UnlearnConfig
        from legato.unlearning.run import unlearn

        generator = load_generator()
        config = UnlearnConfig.for_generator(generator, iterations=iterations, seed=seed, field=field,
                                             gate_space=gate_space, gate_floor=gate_floor, early_stop=early_stop,
                                             stop_consolidate=stop_consolidate)
        config.validate()
        typer.echo(f"Forgetting SynthFaces {DEMO_PERSON} from one photo (other photos held out; {config.field} "
                   f"field{', early stop' if config.early_stop else ''}) …")
        metrics = unlearn(generator, DEMO_PERSON, out, config, overwrite=True, n_random=n_random, n_fid=n_fid)
        _print_table(metrics, out)
