"""One unlearning run end to end: resolve the identity, train, evaluate, and write the run folder.

The run folder (`--out DIR`) is built in `DIR.partial/` and renamed when finished (`unlearning.run_folder`).
"""

from __future__ import annotations

import copy
import os
import platform
import resource
import time
from pathlib import Path

import torch

from legato import __version__
from legato.errors import InputError, LegatoError, TrainingError
from legato.files import atomic_write_json
from legato.inversion.sources import IdentitySource, resolve_identity
from legato.unlearning import run_folder
from legato.unlearning.config import UnlearnConfig, parse_distance
from legato.unlearning.losses import check_reference_crop, make_perceptual
from legato.unlearning.methods import build, warm_start
from legato.unlearning.methods import get as get_method
from legato.unlearning.targets import typical_distance, ufo_target
from legato.unlearning.trainer import train


def freeze(model):
    """Eval mode, no gradients — for modules; other callables (wrapped identity models) pass through."""
    if hasattr(model, "eval"):
        model.eval()
    if hasattr(model, "parameters"):
        for p in model.parameters():
            p.requires_grad_(False)
    return model


def unlearn(
    generator,
    identity: str | IdentitySource,
    out: str | Path,
    config: UnlearnConfig | None = None,
    *,
    target_index: int = 0,
    refine_steps: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    n_random: int = 100,
    n_fid: int = 1000,
    progress: bool = True,
    report: bool = True,
    generator_spec: str = "synthfaces",
    identity_model: str | None = None,
    judge_model: str | None = None,
    judge_crop: str | None = None,
    source=None,
    adapter_name: str = "forget",
    fid_features=None,
    real_images=None,
    extend: str | Path | None = None,
) -> dict:
    """Forget `identity` in `generator` (a `Generator` or a spec for `legato.generators.load`).

    `refine_steps` (for photo identities) overrides `config.refine_steps`.
    `identity_model` (a spec for `legato.identity.load`, default: the backend's own) drives the identity loss
    and, unless `judge_model` names another, judges the result; the papers train with ArcFace IR-SE50 and
    judge with CurricularFace IR-101 on MTCNN crops (`judge_crop="mtcnn:DIR"`, see `identity.cropped`;
    default: the judge's fixed crop). `fid_features` (Inception weights, `--inception`) replaces the identity
    model's features for FID; `real_images` (a folder or a statistics .npz) gives ΔFID_real where the backend
    has no real images of its own. Returns the metrics dict also written to `out/metrics.json`.

    Several people (`identity="@FILE"`, one spec per line) are forgotten by one set, each step taking
    `config.targets_per_step` of them. `extend` (a finished run or its `adapter/` folder) starts from that
    result and adds the new people; its people stay in training (replay), so they stay forgotten.
    """
    out = Path(out)
    work = run_folder.check(out, resume=resume, overwrite=overwrite)
    if n_random < 0 or n_fid < 0:
        raise InputError(f"--n-random and --n-fid must not be negative (got {n_random}, {n_fid})")
    if config is not None:
        config.validate()  # before any loading: a bad option fails at once
    from legato.identity.cropped import load_judge_crop, with_judge_crop

    judge_detector = load_judge_crop(judge_crop)  # a bad --judge-crop fails before the long steps too
    if isinstance(generator, str):
        from legato.generators import load

        generator_spec = generator
        generator = load(generator)
    config = config or UnlearnConfig.for_generator(generator)
    if refine_steps is not None:
        config.refine_steps = refine_steps
    config.validate()
    torch.manual_seed(config.seed)
    t_start = time.perf_counter()
    # the reference protocol's backend settings (EG3D: random noise, the pivot its scripts fall back to)
    protocol_changes = generator.use_reference_protocol() if (
        config.preset == "reference" and hasattr(generator, "use_reference_protocol")) else []

    # The source is the frozen original. When forgetting several people one after another, pass the pristine
    # base as `source` (a deep copy of a model that already carries adapters would share their hooks).
    source = freeze(copy.deepcopy(generator)) if source is None else freeze(source)
    # the identity models first: a mismatch with the settings ends the run before the inversion's work
    device = source.w_avg.device

    def identity_from(spec):
        if spec is None:
            model = source.identity_model()
        else:
            from legato.identity import load as load_identity_model

            model = load_identity_model(spec)
        if model is not None:
            freeze(model)
            if callable(getattr(model, "to", None)):  # judge and loss run where the generator runs
                model.to(device)
        return model

    loss_model = identity_from(identity_model)
    # the judge: the one named, else the backend's independent judge, else (no other) the loss's own model,
    # which the report then marks beside every verdict
    if judge_model is not None:
        identity_model = identity_from(judge_model)
    elif callable(getattr(source, "judge_model", None)):
        identity_model = freeze(source.judge_model()).to(device)
    else:
        identity_model = loss_model
    if judge_detector is not None:  # the judge sees MTCNN crops (a new object: the loss keeps its own crop)
        identity_model = with_judge_crop(identity_model, judge_detector).to(device)
    # a non-differentiable model (dlib) judges the result but cannot drive the identity loss
    loss_identity_model = loss_model if getattr(loss_model, "differentiable", True) else None
    if identity_model is None:  # the run goes on (the losses need no recognizer), but says what is lost
        import sys

        print("warning: no identity model: id_target, id_others, id_preservation and the FID features cannot be "
              "computed; pass --identity-model arcface:PATH (or curricularface:PATH, dlib)", file=sys.stderr)
    if config.identity_crop == "reference" and loss_identity_model is not None and config.weights.identity:
        check_reference_crop(loss_identity_model)
    from legato.identity.framing import photo_loader

    ident = identity if isinstance(identity, IdentitySource) else resolve_identity(
        identity, source, target_index=target_index, seed=config.seed, refine_steps=config.refine_steps,
        load_photo=photo_loader(source))
    ws_u = ident.ws.detach()
    previous = _previous_people(extend, ws_u) if extend is not None else None
    value, relative = parse_distance(config.distance)
    alpha_value, alpha_relative = parse_distance(config.alpha_max)
    scale = typical_distance(source) if (relative or alpha_relative) else 1.0
    distance = value * (scale if relative else 1.0)
    alpha_max = alpha_value * (scale if alpha_relative else 1.0)
    ws_t = ufo_target(ws_u, source.w_avg, config.target, distance, generator=source)
    n_new = ws_u.shape[0]
    if previous is not None:  # the earlier people first, with the targets they were trained towards
        ws_u, ws_t = torch.cat([previous[0], ws_u]), torch.cat([previous[1], ws_t])

    perceptual = make_perceptual(config.perceptual, loss_identity_model).to(ws_u.device)
    dial = None
    if config.dial == "path" and loss_identity_model is not None and get_method(config.method).dial is not None:
        from legato.unlearning.targets import dial_path

        # placed with the loss's model and its threshold: the judge has no say in what the dial means
        dial = dial_path(source, loss_identity_model, ws_u, ws_t, float(loss_identity_model.threshold),
                         crossing=config.dial_crossing)
        dial["ws"] = torch.stack([torch.lerp(ws_u, ws_t, dial["fractions"][:, j].to(ws_u.device).view(-1, 1, 1))
                                  for j in range(len(dial["strengths"]))], 1)
    # the trained parameters start from the seed alone, whatever models were built before them
    torch.manual_seed(config.seed)
    trainable = build(freeze(generator), config, adapter_name=adapter_name)
    if extend is not None:
        warm_start(trainable, _adapter_folder(extend), source)

    from legato.evaluation.metrics import evaluate, quick_scores
    from legato.evaluation.quality import target_quality

    # many people: the collapse curve follows a fixed sample of them (every person at every check would
    # cost more than the training)
    quick_ws = ws_u[torch.linspace(0, ws_u.shape[0] - 1, min(ws_u.shape[0], QUICK_PEOPLE)).round().long()]

    def quick(unlearned):
        return quick_scores(source, unlearned, quick_ws, identity_model=identity_model, seed=config.seed)

    def forget_check(unlearned):
        return quick_scores(source, unlearned, ws_u, identity_model=identity_model, n_random=0,
                            seed=config.seed)["id_target"]

    stop_check = None
    if config.early_stop and loss_identity_model is not None and getattr(loss_identity_model, "threshold", None):
        from legato.evaluation.stop_check import ForgetCheck

        stop_check = ForgetCheck(source, loss_identity_model, float(loss_identity_model.threshold), ws_u,
                                 ident.held_out_ws)

    run_folder.start(work, resume=resume)
    try:
        result = train(source, trainable, ws_u, ws_t, config, identity_model=loss_identity_model,
                       threshold=getattr(identity_model, "threshold", None), perceptual=perceptual,
                       alpha_max=alpha_max, work=work, resume=resume, progress=progress,
                       quick_scores=quick if identity_model is not None else None,
                       # one person: checked after every step until forgotten; several: at the quick scores
                       forget_check=forget_check if identity_model is not None and ws_u.shape[0] == 1 else None,
                       dial_ws=None if dial is None else dial["ws"], stop_check=stop_check)
    except TrainingError as e:
        raise TrainingError(run_folder.failure_hint(str(e), work, config.lr)) from e

    unlearned = freeze(trainable.unlearned)
    calibration = None
    if (config.dial_calibration != "none" and trainable.dial is not None and loss_identity_model is not None
            and getattr(loss_identity_model, "threshold", None) is not None):
        from legato.unlearning.dial_calibration import calibrate_dial

        # the loss's model places the strengths, as it placed the path: the judge has no say in what s means
        calibration = calibrate_dial(source, unlearned, trainable.dial, ws_u, loss_identity_model,
                                     float(loss_identity_model.threshold), how=config.dial_calibration,
                                     crossing=config.dial_crossing)
    metrics = evaluate(source, unlearned, ws_u, ident.held_out_ws, identity_model=identity_model,
                       n_random=n_random, n_fid=n_fid, seed=config.seed, progress=progress,
                       fid_features=fid_features, real_reference=real_images)
    # is the forgotten face still a face? (sharpness against ordinary samples: evaluation.quality)
    metrics.update(target_quality(source, unlearned, ws_u, n_ordinary=max(20, min(200, 2 * n_random)),
                                  seed=config.seed))
    if ws_u.shape[0] > 1:
        metrics.update(people_scores(metrics, ident, n_previous=ws_u.shape[0] - n_new))
    base_params = sum(p.numel() for p in source.parameters())
    metrics = {
        "method": config.method,
        **metrics,
        "identity": ident.to_json(),
        "extends": None if extend is None else str(extend),
        "trainable_params": trainable.num_trainable(),
        "base_params": base_params,
        "seconds": round(result.seconds, 2),
        "seconds_to_forget": None if result.seconds_to_forget is None else round(result.seconds_to_forget, 2),
        "step_to_forget": result.step_to_forget,
        "steps": result.steps,
        "early_stop": bool(config.early_stop and stop_check is not None),
        "stopped_early": result.stopped_early,
        "stop_reason": (f"the loss's model ({getattr(loss_identity_model, 'name', None)}) saw the forget check pass "
                        f"{config.stop_patience} times in a row" if result.stopped_early else
                        ("iteration bound reached" if stop_check is not None else "fixed iteration count")),
        "stop_check": result.stop_record,
        "step_verified": result.step_verified,
        "seconds_to_verified": None if result.seconds_to_verified is None else round(result.seconds_to_verified, 2),
        "stop_check_seconds": round(result.check_seconds, 2) if config.early_stop and stop_check is not None else None,
        "seconds_total": None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "perceptual_backend": perceptual.name,
        "preset": config.preset,
        "protocol_changes": protocol_changes,
        "loss_identity_model": None if loss_identity_model is None else getattr(loss_identity_model, "name", None),
        # the judge is the trainer when the model that gave the verdicts also drove the loss (or the gate)
        "judge_is_trainer": _same_model(identity_model, loss_model),
        "dial": config.dial if dial is not None else "time",
        "dial_path_fractions": None if dial is None else [[round(float(v), 4) for v in row]
                                                          for row in dial["fractions"][:8]],
        "dial_calibration": None if calibration is None else {
            **{k: v for k, v in calibration.items() if k != "strength_map"},
            "strength_map": calibration["strength_map"].to_json()},
        "threshold": getattr(identity_model, "threshold", None),
        "target_distance": round(distance, 4),
        "typical_w_distance": round(scale, 4) if (relative or alpha_relative) else None,
        "final_losses": result.final_losses,
    }

    adapter_dir = run_folder.result_folder(work)
    trainable.save(adapter_dir, metadata={
        "method": config.method, "generator": generator_spec, "identity": ident.to_json(),
        "metrics": {k: metrics.get(k) for k in ("id_target", "id_others", "id_preservation", "fid_pre")},
    })
    run_folder.write_people(adapter_dir, ws_u, ws_t, ident.held_out_ws)
    atomic_write_json(work / "config.json", {
        "config": config.to_dict(), "generator": generator_spec, "identity": ident.to_json(),
        "target_index": target_index, "refine_steps": config.refine_steps, "n_random": n_random, "n_fid": n_fid,
        "versions": {"legato": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(), "pid": os.getpid(),
    })
    if report:
        from legato.unlearning.report import write_run_report

        # many people: the pictures and the dial show the first few
        write_run_report(work, source, unlearned, trainable, ident.subset(REPORT_PEOPLE), metrics,
                         identity_model=identity_model, seed=config.seed)
    metrics["seconds_total"] = round(time.perf_counter() - t_start, 2)
    atomic_write_json(work / "metrics.json", metrics)
    run_folder.finish(work, out)
    return metrics


def _same_model(judge, loss_model) -> bool | None:
    """Whether the judge is the loss's model (the same object or the same name); None without a judge."""
    if judge is None:
        return None
    if loss_model is None:
        return False
    inner = getattr(judge, "model", judge)  # a judge behind an MTCNN crop wraps the model
    return inner is loss_model or getattr(inner, "name", None) == getattr(loss_model, "name", None)


QUICK_PEOPLE = 16  # people the collapse curve follows when a run forgets more
REPORT_PEOPLE = 6  # people a report pictures when a run forgets more


def _adapter_folder(extend: str | Path) -> Path:
    """A run folder's `adapter/`, or the adapter folder itself."""
    extend = Path(extend)
    if (extend / "adapter").is_dir():
        extend = extend / "adapter"
    if not extend.is_dir():
        raise InputError(f"--extend {extend}: no such run or adapter folder")
    return extend


def _previous_people(extend: str | Path, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forgotten latents and their targets of the run `extend` continues (from its people file)."""
    folder = _adapter_folder(extend)
    path = folder / run_folder.PEOPLE_FILE
    if not path.is_file():
        raise InputError(f"--extend {folder}: it has no {run_folder.PEOPLE_FILE}, so its people cannot be "
                         "replayed; give a folder written by legato unlearn")
    try:
        tensors = run_folder.read_people(folder)
    except LegatoError as e:
        raise InputError(f"--extend: {e}") from e
    ws, target = tensors.get("ws"), tensors.get("target")
    if ws is None or target is None or ws.shape != target.shape or ws.shape[1:] != like.shape[1:]:
        raise InputError(f"--extend: {path} does not hold latents of this generator (ws and target "
                         f"[N, {like.shape[1]}, {like.shape[2]}])")
    return ws.to(like.device), target.to(like.device)


def people_scores(metrics: dict, ident, n_previous: int) -> dict:
    """A run that forgets several people: the fraction forgotten (each person's id_target below the
    threshold), overall and for the people this run added / replayed, and the fraction whose other photos
    are no longer recognised."""
    per = metrics.get("id_target_per_latent")
    threshold = metrics.get("threshold")
    out: dict = {"people": None if per is None else len(per), "people_previous": n_previous}
    if per is None or threshold is None:
        return out
    below = [v < threshold for v in per]
    out["forgotten_fraction"] = sum(below) / len(below)
    if n_previous:
        out["forgotten_fraction_previous"] = sum(below[:n_previous]) / n_previous
        out["forgotten_fraction_new"] = sum(below[n_previous:]) / max(1, len(below) - n_previous)
    others = metrics.get("id_others_per_latent")
    owner = getattr(ident, "held_out_owner", None)
    if others is not None and owner is not None and len(others) == len(owner):
        people: dict[int, list[float]] = {}
        for v, o in zip(others, owner.tolist(), strict=True):
            people.setdefault(o, []).append(v)
        out["id_others_forgotten_fraction"] = sum(sum(v) / len(v) < threshold for v in people.values()) / len(people)
    return out


def _people_line(metrics: dict) -> str:
    """'187/200 below the threshold (10 replayed: 10/10)' for a run that forgets several people."""
    n, frac = metrics["people"], metrics.get("forgotten_fraction")
    if frac is None:
        return f"{n} (no identity model to judge them)"
    line = f"{round(frac * n)}/{n} below the threshold"
    prev = metrics.get("people_previous") or 0
    if prev:
        line += f" (of the {prev} from --extend: {round(metrics['forgotten_fraction_previous'] * prev)}/{prev})"
    if metrics.get("id_others_forgotten_fraction") is not None:
        line += f"; other photos not recognised for {metrics['id_others_forgotten_fraction']:.0%} of them"
    return line


def summary_rows(metrics: dict) -> list[tuple[str, str]]:
    """The short table `legato unlearn`/`legato demo` print (headline numbers with their verdicts)."""
    from legato.evaluation.verdicts import mark_of, verdicts

    judged = verdicts(metrics)

    def fmt(key):
        v = metrics.get(key)
        if v is None:
            return "—"
        ci = metrics.get(f"{key}_ci95")
        s = f"{v:.3f}" if isinstance(v, float) else str(v)
        s += f"  [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        if key in judged and (judged[key]["passed"] is not None or judged[key].get("inconclusive")
                              or judged[key].get("self_judged")):
            s += f"  {mark_of(judged[key])} {judged[key]['rule']}"
            if judged[key]["passed"] is None:
                short = judged[key]["meaning"].split(":")[0]
                s += f" — {short})" if short.count("(") > short.count(")") else f" — {short}"
        return s

    return [
        ("method", str(metrics.get("method"))),
        ("id_target (↓)", fmt("id_target")),
        ("id_others (↓)", fmt("id_others")),
        ("id_preservation (↑)", fmt("id_preservation")),
        ("fid_pre (↓)", fmt("fid_pre")),
        ("delta_fid_real (↓)", fmt("delta_fid_real")),
        ("threshold", fmt("threshold")),
        ("judge / loss model", f"{metrics.get('identity_model')} / {metrics.get('loss_identity_model')}"
         + ("  ⚠ the judge is the trainer" if metrics.get("judge_is_trainer") else "")),
        *([("people forgotten", _people_line(metrics))] if metrics.get("people") else []),
        ("forgotten face plausible", "—" if metrics.get("target_plausible") is None else
         f"{'✔' if metrics['target_plausible'] else '✘'} (sharpness {metrics['target_sharpness']:.4g}, "
         f"percentile {metrics['target_sharpness_percentile']:.0f} of ordinary samples)"),
        ("trainable / base params", f"{metrics.get('trainable_params'):,} / {metrics.get('base_params'):,}"),
        ("training seconds", fmt("seconds")),
        ("forgotten after", "—" if metrics.get("step_to_forget") is None else
         f"step {metrics['step_to_forget']} ({metrics['seconds_to_forget']:.1f} s)"),
        *([("verified forgotten at", f"step {metrics['step_verified']} ({metrics['seconds_to_verified']:.1f} s "
            "with the stop checks)")] if metrics.get("step_verified") is not None else []),
        ("perceptual loss", str(metrics.get("perceptual_backend"))),
    ]


