"""Forget one class of the digits flow: Neural-ODE adapters on the UNet (`legato`) or full fine-tuning.

Losses, on straight-path points x_t = (1 − t)·x_0 + t·x_1:
- forget: the class-`c` velocity is sent to zero, so a class-`c` trajectory stays at its starting noise
  (points: interpolants towards real class-`c` digits, and pure noise at random t — the new paths);
- retain: on the other classes the velocity matches the frozen teacher (the same UNet, adapters off);
- trajectory consistency (legato only): `legato.ode`'s mean squared step of the adapters' ODE states.
`run()` evaluates the teacher and the result, sweeps the adapter strength, and writes the run folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from legato.errors import InputError, TrainingError
from legato.files import atomic_write_json
from legato.unlearning import run_folder
from legato.unlearning.config import TrainingOptions
from legato.unlearning.methods.base import Trainable
from legato.unlearning.methods.dials import WeightInterpolation

METHODS = ("legato", "finetune")


@dataclass
class FlowUnlearnConfig(TrainingOptions):
    """Options of `run()`: the shared training settings (`TrainingOptions`: method, iterations, lr, seed,
    the adapters' ODE, the loop's) and the flow's own. Defaults: the settings behind the numbers in
    docs/results/digits-flow.md."""

    DEFAULT_ITERATIONS: ClassVar[dict[str, int]] = {"legato": 300, "finetune": 300}
    DEFAULT_LR: ClassVar[dict[str, float]] = {"legato": 1e-3, "finetune": 1e-4}

    hidden: int = 24  # adapter field width; 24 keeps the `mid` adapter under 5% of the UNet
    batch_retain: int = 64
    batch_forget: int = 32
    lambda_forget: float = 1.0
    lambda_retain: float = 1.0
    sites: tuple[str, ...] = ("mid",)
    strengths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    n_forget: int = 100  # samples of the forgotten class per strength
    n_retain: int = 40  # samples per retained class per strength
    sampler_method: str = "midpoint"
    sampler_steps: int = 10
    leakage_draws: int = 16
    flow_weights: str | None = None  # None: the shipped weights
    classifier_weights: str | None = None

    def validate(self) -> FlowUnlearnConfig:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r} for the digits flow; choose one of "
                             f"{', '.join(METHODS)}")
        self.validate_training()
        self.sites = tuple(self.sites)
        self.strengths = tuple(float(x) for x in self.strengths)
        if not self.strengths or max(self.strengths) != 1.0:
            raise InputError("strengths must include 1.0 (the trained result)")
        return self


def _make_trainable(teacher: nn.Module, method: str, cfg: FlowUnlearnConfig) -> Trainable:
    """The shared methods on a UNet (`unlearning.methods.modules`): adapters on `teacher` itself (its
    weights frozen; strength 0 is the teacher), or fine-tuning of a copy."""
    from legato.unlearning.methods.modules import full_finetune, ode_adapters

    if method == "legato":
        modules = dict(teacher.named_modules())
        channels = {s: _out_channels(modules.get(s), s) for s in cfg.sites}
        return ode_adapters(teacher, "legato", list(cfg.sites), channels, hidden=cfg.hidden, t_end=cfg.t_end,
                            step_size=cfg.step_size, solver=cfg.solver)
    return full_finetune(teacher, method, copy_model=True)


def _out_channels(module: nn.Module | None, site: str) -> int:
    if module is None:
        raise InputError(f"the digits UNet has no module {site!r}; use e.g. mid, up.0, up.1, down.2")
    for attr in ("out_channels",):
        if isinstance(getattr(module, attr, None), int):
            return int(getattr(module, attr))
    raise InputError(
        f"module {site!r} of the digits UNet has no channel count; pick a block such as mid or up.0"
    )


def _teacher_velocity(teacher: nn.Module, trainable: Trainable, x, t, y) -> torch.Tensor:
    with torch.no_grad():
        if trainable.adapter_set is not None:  # the adapters sit on the teacher: switch them off
            trainable.adapter_set.enabled = False
            try:
                return teacher(x, t, y)
            finally:
                trainable.adapter_set.enabled = True
        return teacher(x, t, y)


class FlowObjective:
    """The digits flow's objective for the one training loop (`unlearning.loop`): per iteration a batch of
    retained-class paths (velocity kept on the teacher's) and of forgotten-class points (velocity sent to
    zero), plus the adapters' trajectory-consistency term."""

    def __init__(self, teacher, student: Trainable, data, forget_class: int, cfg: FlowUnlearnConfig,
                 method: str) -> None:
        self.teacher, self.student, self.cfg, self.forget_class = teacher, student, cfg, forget_class
        self.name = f"{method}, class {forget_class}"
        self.model, self.params = student.unlearned, student.params
        keep = data.train_labels != forget_class
        self.xr, self.yr = data.train_images[keep], data.train_labels[keep]
        self.xf = data.of_class(forget_class)

    def state_dict(self) -> dict:
        return self.student.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state)

    def setup(self) -> None:
        pass

    def begin(self, start: int) -> None:
        self.model.train()

    def end(self) -> None:
        self.model.eval()

    def progress_info(self, losses: dict) -> str:
        return f"loss {losses['total']:.4f} (forget {losses['forget']:.4f})"

    def step(self, step: int, gen: torch.Generator) -> dict:
        cfg, student, xr, yr, xf = self.cfg, self.student, self.xr, self.yr, self.xf
        ir = torch.randint(0, len(xr), (cfg.batch_retain,), generator=gen)
        x1r, y_r = xr[ir], yr[ir]
        x0r = torch.randn(x1r.shape, generator=gen)
        tr = torch.rand(len(x1r), generator=gen)
        xtr = (1 - tr)[:, None, None, None] * x0r + tr[:, None, None, None] * x1r
        nf = cfg.batch_forget
        x1f = xf[torch.randint(0, len(xf), (nf,), generator=gen)]
        x0f = torch.randn(x1f.shape, generator=gen)
        tf = torch.rand(nf, generator=gen)
        mix = (torch.arange(nf) < nf // 2).float()  # first half: real paths; second half: pure noise
        xtf = (1 - tf * mix)[:, None, None, None] * x0f + (tf * mix)[:, None, None, None] * x1f
        y_f = torch.full((nf,), self.forget_class, dtype=torch.long)
        v_teacher = _teacher_velocity(self.teacher, student, xtr, tr, y_r)
        v = student.unlearned(torch.cat([xtr, xtf]), torch.cat([tr, tf]), torch.cat([y_r, y_f]))
        loss_retain = (v[: len(xtr)] - v_teacher).pow(2).mean()
        loss_forget = v[len(xtr):].pow(2).mean()
        loss_traj = student.trajectory_loss(loss_forget)  # zero without adapters
        loss = cfg.lambda_retain * loss_retain + cfg.lambda_forget * loss_forget + cfg.lambda_trajectory * loss_traj
        if not torch.isfinite(loss):
            raise TrainingError(f"the unlearning loss became {loss.item()} at step {step}; lower the lr")
        loss.backward()
        return {"total": loss.item(), "forget": loss_forget.item(), "retain": loss_retain.item(),
                "trajectory": loss_traj.item()}


def _train(teacher, student: Trainable, data, forget_class: int, cfg: FlowUnlearnConfig, seed: int, work: Path,
           method: str, resume: bool = False, progress: bool = True) -> float:
    """Train through the one loop (its log, checkpoints and progress bar in `work`); returns the training
    seconds (a resumed run's include those before the interruption)."""
    from legato.unlearning import loop

    settings = cfg.loop_settings()
    try:
        result = loop.run(FlowObjective(teacher, student, data, forget_class, cfg, method), settings, work,
                          resume=resume, progress=progress)
    except TrainingError as e:
        raise TrainingError(run_folder.failure_hint(str(e), work, cfg.effective_lr)) from e
    if isinstance(student.dial, WeightInterpolation):
        student.dial.capture()  # the fine-tuned weights are strength 1
    return result.seconds


def _evaluate(student: Trainable, classifier, forget_class: int, cfg: FlowUnlearnConfig, seed: int):
    """Sample every strength with the same noise; returns (sweep rows, samples per strength, labels)."""
    from legato.flows.metrics import accuracy_by_class
    from legato.flows.sampling import SamplerConfig, noise_for, sample

    retained = [c for c in range(10) if c != forget_class]
    labels = torch.tensor([forget_class] * cfg.n_forget + [c for c in retained for _ in range(cfg.n_retain)])
    noise = noise_for(labels, seed + 1000)
    scfg = SamplerConfig(method=cfg.sampler_method, steps=cfg.sampler_steps)
    rows, images = [], {}
    for s in cfg.strengths:
        student.dial.strength = s
        x = sample(student.unlearned, labels, config=scfg, noise=noise)
        acc = accuracy_by_class(classifier, x, labels)
        rows.append(
            {
                "strength": s,
                "forget_acc": acc[forget_class],
                "retain_acc": sum(acc[c] for c in retained) / len(retained),
                "per_class": acc,
            }
        )
        images[s] = x
    student.dial.strength = 1.0
    return rows, images, labels


def run(
    out_dir: str | Path,
    forget_class: int,
    method: str = "legato",
    seed: int = 0,
    iterations: int | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    config: FlowUnlearnConfig | None = None,
    **options,
) -> dict:
    """Forget `forget_class` (0–9) of the shipped digits flow; write the run folder; return its metrics.

    The run folder is the image methods' (`unlearning.run_folder`): built in `OUT.partial/`, whose
    checkpoint `resume` continues from bit for bit, and renamed to `out_dir` when complete. It holds
    `adapter/` (the adapter bundle, or for fine-tuning `finetuned_weights.safetensors`; either loads with
    `legato.unlearning.methods.load_result`), `metrics.json`, `log.jsonl`, `report.html` and PNG grids.
    `options` are fields of `FlowUnlearnConfig`; a validated `config` replaces method, seed, iterations and
    them.
    """
    from legato.flows.data import check_class, load_split
    from legato.flows.metrics import features, frechet_distance, is_monotone, leakage, mmd2
    from legato.flows.report import grid_image, png_bytes, sweep_plot, write_run_report
    from legato.flows.sampling import SamplerConfig, noise_for, sample
    from legato.flows.weights import load_classifier, load_flow

    forget_class = check_class(forget_class)
    unknown = sorted(set(options) - {f.name for f in fields(FlowUnlearnConfig)})
    if unknown:
        raise InputError(
            f"unknown option(s) {unknown}; the digits flow takes "
            f"{[f.name for f in fields(FlowUnlearnConfig)]}"
        )
    cfg = config or FlowUnlearnConfig(method=method, seed=seed, iterations=iterations, **options).validate()
    method, seed = cfg.method, cfg.seed
    t_start = time.time()
    teacher = load_flow(cfg.flow_weights)
    classifier = load_classifier(cfg.classifier_weights)
    data = load_split()
    unet_params = sum(p.numel() for p in teacher.parameters())
    out_dir = Path(out_dir)
    work = run_folder.check(out_dir, resume=resume, overwrite=overwrite)
    torch.manual_seed(seed)  # the adapters' initial weights
    student = _make_trainable(teacher, method, cfg)
    trained = sum(p.numel() for p in student.params)
    tmp = run_folder.start(work, resume=resume)
    train_wall = _train(teacher, student, data, forget_class, cfg, seed, tmp, method, resume, progress)
    sweep, samples, labels = _evaluate(student, classifier, forget_class, cfg, seed)
    s0 = next(r for r in sweep if r["strength"] == 0.0) if 0.0 in cfg.strengths else None
    s1 = next(r for r in sweep if r["strength"] == 1.0)
    retained_mask = labels != forget_class
    # a second teacher draw (other noise) is the reference; teacher-vs-teacher is the floor
    student.dial.strength = 0.0
    ref = sample(
        student.unlearned,
        labels[retained_mask],
        noise=noise_for(labels[retained_mask], seed + 2000),
        config=SamplerConfig(method=cfg.sampler_method, steps=cfg.sampler_steps),
    )
    teacher_x = (
        samples[0.0][retained_mask]
        if 0.0 in samples
        else sample(
            student.unlearned, labels[retained_mask], noise=noise_for(labels, seed + 1000)[retained_mask]
        )
    )
    def leakage_at(strength: float):
        student.dial.strength = strength
        return leakage(student.unlearned, data.of_class(forget_class), data.of_class(forget_class, "test"),
                       forget_class, seed=seed, draws=cfg.leakage_draws)

    leak_teacher = leakage_at(0.0)  # strength 0 is the teacher
    leak_student = leakage_at(1.0)
    f_ref, f_t = features(classifier, ref), features(classifier, teacher_x)
    f_s = features(classifier, samples[1.0][retained_mask])
    teacher_row = s0 or {"forget_acc": None, "retain_acc": None, "per_class": {}}
    forget_accs = [r["forget_acc"] for r in sweep]
    # what the classifier makes of pure noise (the forget target): the floor of the forgotten accuracy
    noise_gen = torch.Generator().manual_seed(seed + 3000)
    noise = torch.randn(1000, 1, 16, 16, generator=noise_gen).clamp(-1, 1)
    noise_rate = float((classifier.predict(noise) == forget_class).float().mean())
    metrics = {
        "method": method,
        "forget_class": forget_class,
        "seed": seed,
        "steps": cfg.effective_iterations,
        "teacher": {k: teacher_row[k] for k in ("forget_acc", "retain_acc", "per_class")},
        "unlearned": {k: s1[k] for k in ("forget_acc", "retain_acc", "per_class")},
        "retain_drop_points": 100 * (teacher_row["retain_acc"] - s1["retain_acc"]) if s0 else None,
        "fid_retained": frechet_distance(f_s, f_ref),
        "fid_retained_floor": frechet_distance(f_t, f_ref),
        "mmd2_retained": mmd2(f_s, f_ref),
        "mmd2_retained_floor": mmd2(f_t, f_ref),
        "leakage": {"teacher": leak_teacher, "unlearned": leak_student},
        "trained_params": trained,
        "unet_params": unet_params,
        "trained_fraction": trained / unet_params,
        "sweep": [{k: r[k] for k in ("strength", "forget_acc", "retain_acc")} for r in sweep],
        "sweep_monotone": is_monotone(forget_accs),
        "noise_classified_as_forgotten": noise_rate,
        "train_wall_s": round(train_wall, 1),
        "config": {**asdict(cfg), "iterations": cfg.effective_iterations, "lr": cfg.effective_lr,
                   "sites": list(cfg.sites), "strengths": list(cfg.strengths)},
    }
    metrics["checks"] = {
        "forgotten-class accuracy <= 20%": s1["forget_acc"] <= 0.20,
        "retained-class accuracy within 3 points of the teacher": bool(s0)
        and metrics["retain_drop_points"] <= 3.0,
        "trained parameters <= 5% of the UNet": metrics["trained_fraction"] <= 0.05,
        "strength sweep monotone (forgotten-class accuracy never rises)": metrics["sweep_monotone"],
    }
    # files
    adapter_dir = run_folder.result_folder(tmp)
    bundle_meta = {
        "method": method,
        "forget_class": forget_class,
        "generator": "digits-flow",
        "metrics": {"forget_acc": s1["forget_acc"], "retain_acc": s1["retain_acc"]},
    }
    if student.adapter_set is not None:
        student.save(adapter_dir, bundle_meta)
        student.adapter_set.detach()
    else:
        from legato.unlearning.methods.finetune import save_finetuned

        save_finetuned(adapter_dir, student.dial.tuned, method,
                       {**bundle_meta, "unet_config": teacher.config.to_dict()})
    per_row = 8
    retained = [c for c in range(10) if c != forget_class]

    def class_rows(x):
        return [x[labels == c][:per_row] for c in [forget_class, *retained]]

    images = {
        "samples_teacher": png_bytes(grid_image(class_rows(samples[0.0]))) if 0.0 in samples else None,
        "samples_unlearned": png_bytes(grid_image(class_rows(samples[1.0]))),
        "sweep_forgotten_class": png_bytes(
            grid_image([samples[s][labels == forget_class][:12] for s in cfg.strengths])
        ),
        "sweep_plot": sweep_plot(
            metrics["sweep"], forget_class, f"{method}: forgetting class {forget_class}"
        ),
    }
    images = {k: v for k, v in images.items() if v is not None}
    metrics["wall_s"] = round(time.time() - t_start, 1)
    write_run_report(tmp, metrics, images)
    atomic_write_json(tmp / "metrics.json", metrics)
    run_folder.finish(work, out_dir)
    return metrics
