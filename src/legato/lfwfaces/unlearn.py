"""`legato unlearn --generator lfw-faces --identity NAME`: forget a person, judge the result with dlib, write
the run folder.

The run folder (written whole, as the other backends' are): `adapter/` (the method's result: an adapter
bundle, a PEFT LoRA folder, the fine-tuned UNet in diffusers' format, or the edited embedding row),
`metrics.json`, `log.jsonl`, `forgotten_sweep.png` (the person's samples, a row per strength, the same
noise), `others_before_after.png` and `dial.png`.

Verdicts, each with its rule (docs/reference/lfw-faces.md): the person is **forgotten** when the upper end of the 95%
Wilson interval of their recognition rate lies below `FORGOTTEN_RATE`; the others are **kept** when their
mean recognition rate fell by at most `KEPT_DROP` points (a paired bootstrap interval over the people
decides, else "inconclusive"; fewer than `MIN_OTHER_SAMPLES` judged samples of them cannot pass); the
forgotten name still gives **a face** when dlib finds one in at least `FACE_RATE` of its samples.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from legato.errors import InputError, TrainingError
from legato.lfwfaces.erase import (
    STOP_FORGET_GAP,
    STOP_KEPT_DRIFT,
    EraseConfig,
    EraseObjective,
    Student,
    as_people,
    build_check_states,
    build_pool,
    stop_scores,
)
from legato.unlearning import run_folder

STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # `sweep`
RUN_STRENGTHS = (0.0, 1.0)  # what a forgetting run judges of the dial (the whole dial is `sweep`)
FORGOTTEN_RATE = 0.10  # MACE reports 0.004–0.043 for erased celebrities; with 0 of 48 the interval ends at 7.4%
KEPT_DROP = 0.10
FACE_RATE = 0.90
MIN_FORGET_SAMPLES = 16
# the others' verdict needs this many judged samples: with none of 35 lost, the Wilson interval of the share
# lost ends below 10% (9.9%); fewer cannot tell "kept" from a 10-point drop however the bootstrap reads
MIN_OTHER_SAMPLES = 35


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _bootstrap_mean(values: torch.Tensor, seed: int, draws: int = 2000) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), (draws, len(values)), generator=g)
    means = values[idx].mean(1)
    return float(means.quantile(0.025)), float(means.quantile(0.975))


def source_descriptors(world, judge, labels: torch.Tensor, noise_seed: int, *, teacher=None, keep: int = 24,
                       cache: bool = True, progress: bool = False) -> dict:
    """dlib's view of the **source** model's samples for `labels` from `initial_noise(…, noise_seed)`:
    `found`, `desc` (raw descriptors), `fid` (FID features) and the first `keep` images. They depend only on
    the source weights, the labels and the noise, so `source_cache` keeps them: every forgetting run of the
    same world then judges only its own samples."""
    from legato.lfwfaces.source_cache import cached
    from legato.lfwfaces.world import GUIDANCE, STEPS, initial_noise, sample

    def compute() -> dict:
        x = sample(world, labels, noise=initial_noise(len(labels), world.size, noise_seed),
                   unet=teacher if teacher is not None else world.unet, progress=progress)
        found, desc = judge.descriptors(x)
        return {"found": found.to(torch.uint8), "desc": desc.float(), "fid": judge.fid_features(x).float(),
                "images": x[:keep]}

    got = cached(world, "judged", {"labels": labels.tolist(), "seed": noise_seed, "steps": STEPS,
                                   "guidance": GUIDANCE, "keep": keep, "judge": judge.name}, compute, cache)
    return {"found": got["found"].bool(), "desc": got["desc"], "fid": got["fid"].double(), "images": got["images"]}


def evaluate(world, student: Student, judge, *, n_forget: int = 48, n_other: int = 2,
             strengths=RUN_STRENGTHS, seed: int = 0, cache: bool = True,
             progress: bool = True) -> tuple[dict, dict]:
    """Judge the person's samples at every strength and the other people's at 0 and 1 (the same noise);
    returns (metrics, images). Strength 0 is the source model: it comes from `source_descriptors`."""
    from legato.evaluation.fid import frechet_distance
    from legato.lfwfaces.judge import recognition_rates
    from legato.lfwfaces.world import initial_noise, sample

    people, k = student.people, len(world.people)
    if n_forget < MIN_FORGET_SAMPLES:
        raise InputError(f"--n-forget must be at least {MIN_FORGET_SAMPLES} to decide a recognition rate")
    strengths = sorted({0.0, 1.0, *(float(s) for s in strengths)})
    # n_forget samples of each person forgotten (of the one person: exactly the single-person draw)
    yf = torch.tensor(people, dtype=torch.long).repeat_interleave(n_forget)
    nf = initial_noise(len(yf), world.size, seed + 201)
    # every person's n_other samples from one noise draw, so the source's are shared by all runs
    y_all = torch.arange(k).repeat_interleave(n_other)
    keep = ~torch.isin(y_all, torch.tensor(people))
    yo = y_all[keep]
    no = initial_noise(len(y_all), world.size, seed + 202)[keep]
    src_f = source_descriptors(world, judge, yf, seed + 201, teacher=student.teacher, cache=cache,
                               progress=progress, keep=24 if len(people) == 1 else len(yf))
    src_o = source_descriptors(world, judge, y_all, seed + 202, teacher=student.teacher, keep=len(y_all),
                               cache=cache, progress=progress)
    sweep, images, per_person = [], {}, {}
    for s in strengths:
        if s == 0.0:
            j, x = judge.judge_descriptors(src_f["found"], src_f["desc"]), src_f["images"]
        else:
            student.set_strength(s)
            x = sample(world, yf, noise=nf, unet=student.unet, progress=progress)
            j = judge.judge(x)
        hit = j.recognised_as == yf
        rec, n = int(hit.sum()), len(yf)
        as_other = int(((j.recognised_as >= 0) & ~hit).sum())
        sweep.append({"strength": s, "recognition": rec / n, "recognition_ci": wilson(rec, n),
                      "face_found": float(j.found.float().mean()), "recognised_as_other": as_other / n,
                      "recognised_as": _counts(j.recognised_as, world.people)})
        per_person[s] = {p: (int(hit[yf == p].sum()), float(j.found[yf == p].float().mean())) for p in people}
        # the picture: 12 samples of the one person, or the first sample of each of the first 12 people
        images[s] = x[:12] if len(people) == 1 else x[torch.arange(min(12, len(people))) * n_forget]
    student.set_strength(1.0)
    x1 = sample(world, yo, noise=no, unet=student.unet, progress=progress)
    before_j = judge.judge_descriptors(src_o["found"][keep], src_o["desc"][keep])
    by_strength = {0.0: (src_o["images"][keep], recognition_rates(before_j, yo, k), src_o["fid"][keep]),
                   1.0: (x1, recognition_rates(judge.judge(x1), yo, k), judge.fid_features(x1))}
    out = {"sweep": sweep}
    others = [p for p in range(k) if p not in people]
    before, after = by_strength[0.0][1], by_strength[1.0][1]
    drops = torch.tensor([before["recognition"][p] - after["recognition"][p] for p in others])
    real = judge.real_features.double()
    last = sweep[-1]
    out.update({
        "person": world.people[people[0]] if len(people) == 1 else None,
        "people": [world.people[p] for p in people],
        "recognition_before": sweep[0]["recognition"],
        "recognition_after": last["recognition"],
        "recognition_after_ci": last["recognition_ci"],
        "face_found_after": last["face_found"],
        "others_recognition_before": before["mean_recognition"],
        "others_recognition_after": after["mean_recognition"],
        "others_drop": float(drops.mean()),
        "others_drop_ci": _bootstrap_mean(drops, seed),
        "others_face_found_after": after["mean_face_found"],
        "others_worst": max(((world.people[p], float(d)) for p, d in zip(others, drops, strict=True)),
                            key=lambda item: item[1]),
        "fid_dlib_others_before": frechet_distance(by_strength[0.0][2], real),
        "fid_dlib_others_after": frechet_distance(by_strength[1.0][2], real),
        "n_forget": n_forget,
        "n_other_per_person": n_other,
        "n_other_samples": len(others) * n_other,
    })
    if len(people) > 1:  # each person's own rate: the set is forgotten when every one of them is
        out["per_person"] = [
            {"person": world.people[p], "recognition_before": per_person[0.0][p][0] / n_forget,
             "recognition_after": per_person[1.0][p][0] / n_forget,
             "recognition_after_ci": wilson(per_person[1.0][p][0], n_forget), "face_found_after": per_person[1.0][p][1]}
            for p in people]
    out["verdicts"] = verdicts(out)
    grid = {"forgotten_sweep": [images[s] for s in strengths],
            "others_before_after": [by_strength[0.0][0][: 2 * 12 : n_other][:12],
                                    by_strength[1.0][0][: 2 * 12 : n_other][:12]]}
    return out, grid


def _counts(recognised_as: torch.Tensor, people: list[str], top: int = 3) -> dict:
    """Whom the samples were recognised as (the `top` most frequent; "nobody" = no match within 0.6)."""
    names, counts = torch.unique(recognised_as, return_counts=True)
    order = counts.argsort(descending=True)[:top]
    return {(people[int(names[i])] if names[i] >= 0 else "nobody"): int(counts[i]) for i in order}


def _forgotten(ci) -> str:
    lo, hi = ci
    return "✔" if hi < FORGOTTEN_RATE else ("✘" if lo >= FORGOTTEN_RATE else "inconclusive")


def verdicts(m: dict) -> dict:
    rows = m.get("per_person")
    if rows:  # several people: ✔ when each is, ✘ when any is
        each = [_forgotten(r["recognition_after_ci"]) for r in rows]
        forgotten = "✔" if all(e == "✔" for e in each) else ("✘" if "✘" in each else "inconclusive")
    else:
        forgotten = _forgotten(m["recognition_after_ci"])
    d_lo, d_hi = m["others_drop_ci"]
    kept = "✔" if d_hi <= KEPT_DROP else ("✘" if d_lo > KEPT_DROP else "inconclusive")
    if kept == "✔" and m.get("n_other_samples", MIN_OTHER_SAMPLES) < MIN_OTHER_SAMPLES:
        kept = "inconclusive (n too small)"
    face = "✔" if m["face_found_after"] >= FACE_RATE else "✘"
    return {f"person forgotten (recognition 95% CI below {FORGOTTEN_RATE:.0%})": forgotten,
            f"others kept (mean recognition drop ≤ {KEPT_DROP:.0%} points, 95% CI)": kept,
            f"the name still draws a face (dlib finds one in ≥ {FACE_RATE:.0%})": face}


def _dial_plot(sweep: list[dict], title: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = [r["strength"] for r in sweep]
    rate = [r["recognition"] for r in sweep]
    lo = [r["recognition_ci"][0] for r in sweep]
    hi = [r["recognition_ci"][1] for r in sweep]
    fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=110)
    # two strengths (a run's own check) are two measurements, not a curve: no line is drawn between them
    joined = len(s) > 2
    if joined:
        ax.plot(s, rate, "o-", label="recognised as the person")
        ax.fill_between(s, lo, hi, alpha=0.2)
    else:
        ax.errorbar(s, rate, yerr=[[r - a for r, a in zip(rate, lo, strict=True)],
                                   [b - r for r, b in zip(rate, hi, strict=True)]],
                    fmt="o", capsize=4, label="recognised as the person (95% CI)")
        title += "\n(s = 0 and 1 only; `legato sweep` measures the dial between)"
    ax.plot(s, [r["face_found"] for r in sweep], "s--" if joined else "s", label="dlib finds a face")
    ax.axhline(FORGOTTEN_RATE, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("strength s")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _save_result(student: Student, directory: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    method = student.method
    if student.adapters is not None:
        from legato.ode import save_bundle

        save_bundle(student.adapters, directory, metadata=metadata)
        return
    directory.mkdir(parents=True)
    meta = {"legato": json.dumps(metadata)}
    if method == "finetune":
        student.unet.save_pretrained(str(directory), safe_serialization=True)
        (directory / "legato_result.json").write_text(json.dumps(metadata, indent=2) + "\n")
    elif method == "lora":  # PEFT's format (`unlearning.methods.modules.save_peft_lora`)
        student.trainable.save(directory, {**metadata, "target_sites": list(student.config.sites)})
    else:  # the forgotten people's rows, in the order of metadata["people"]
        rows = student.unet.class_embedding.weight[student.people].detach().clone().contiguous()
        save_file({"class_embedding.rows": rows}, str(directory / "embedding_edit.safetensors"), metadata=meta)


def people_of(identity: str) -> list[str]:
    """The names a run forgets: one name, or `@FILE` with one name per line (blank lines and `#` skipped)."""
    if not identity.startswith("@"):
        return [identity]
    path = Path(identity[1:])
    if not path.is_file():
        raise InputError(f"identity list {path} does not exist")
    try:
        names = [line.strip() for line in path.read_text().splitlines()
                 if line.strip() and not line.strip().startswith("#")]
    except UnicodeDecodeError as e:
        raise InputError(f"identity list {path} is not a text file (one name per line)") from e
    if not names:
        raise InputError(f"identity list {path} names nobody (one name of `legato lfw-faces people` per line)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"identity list {path} names {', '.join(twice)} more than once")
    return names


def run(out: str | Path, identity: str, config: EraseConfig | None = None, *, generator: str | Path | None = None,
        n_forget: int = 48, n_other: int = 2, strengths=RUN_STRENGTHS, overwrite: bool = False,
        resume: bool = False, progress: bool = True, cache: bool = True, judge=None) -> dict:
    """Forget `identity` (a name of `legato lfw-faces people`, or `@FILE` of several, forgotten by one result)
    with `config`; write `out`; return metrics.

    The run folder is built in `OUT.partial/` (`unlearning.run_folder`), whose checkpoint `resume`
    continues from bit for bit, and renamed to `out` when complete.

    `judge` defaults to dlib with the shipped reference (`DlibJudge.shipped()`); it must name the
    generator's people in the generator's order."""
    from legato.evaluation.images import save_grid
    from legato.lfwfaces.judge import DlibJudge
    from legato.lfwfaces.world import GUIDANCE, STEPS, load_world
    from legato.unlearning import loop

    config = (config or EraseConfig()).validate()
    out = Path(out)
    work = run_folder.check(out, resume=resume, overwrite=overwrite)
    if n_forget < MIN_FORGET_SAMPLES or n_other < 1:
        raise InputError(f"--n-forget must be ≥ {MIN_FORGET_SAMPLES} and the samples per other person ≥ 1")
    t_start = time.time()
    world = load_world(generator)
    names = people_of(identity)
    people = [world.label_of(n) for n in names]
    if len(people) >= len(world.people):
        raise InputError(f"{identity} names all {len(world.people)} people of the world: nobody would be kept")
    person = people[0] if len(people) == 1 else people
    judge = judge or DlibJudge.shipped()
    if judge.people != world.people:
        raise InputError("the judge's reference names other people than this generator; rebuild it with "
                         "`legato lfw-faces reference`")
    unet_params = sum(p.numel() for p in world.unet.parameters())
    tmp = run_folder.start(work, resume=resume)
    train_seconds, stop = 0.0, None
    if config.method != "embedding":
        pool = build_pool(world, person, config, STEPS, GUIDANCE, cache=cache)
        checks = build_check_states(world, person, config, STEPS, GUIDANCE)  # before anything attaches
        torch.manual_seed(config.seed)  # the adapters' initial weights
        student = Student(world, person, config)
        settings = config.loop_settings()
        scores = lambda unet: stop_scores(unet, person, checks)  # noqa: E731
        quick = (lambda unet: {k: v for k, v in scores(unet).items() if k != "passed"}) \
            if not config.early_stop else None  # the gaps in the log either way
        try:
            result = loop.run(EraseObjective(student, pool, config), settings, tmp, resume=resume,
                              progress=progress, quick_scores=quick, stop_check=scores)
        except TrainingError as e:
            raise TrainingError(run_folder.failure_hint(str(e), tmp, config.effective_lr)) from e
        train_seconds = result.seconds
        stop = {"step": result.steps, "stopped_early": result.stopped_early,
                "reason": ("the person's velocity gap and the others' drift held within "
                           f"{STOP_FORGET_GAP} / {STOP_KEPT_DRIFT} at {config.stop_patience} checks in a row"
                           + (f", then {config.stop_consolidate} steps more" if config.stop_consolidate else "")
                           if result.stopped_early else "the iteration count"),
                "last_check": result.stop_record, "step_verified": result.step_verified,
                "seconds_to_verified": result.seconds_to_verified} if config.early_stop else None
    else:
        student = Student(world, person, config)
        student.finish_training()
    metrics, grids = evaluate(world, student, judge, n_forget=n_forget, n_other=n_other, seed=config.seed,
                              strengths=strengths, cache=cache, progress=progress)
    metrics.update({
        "generator": "lfw-faces", "method": config.method, "judge": "dlib (lfw-faces reference)",
        "loss_model": "the frozen UNet's own velocities (no recognizer)",
        "trained_params": student.num_trainable, "unet_params": unet_params,
        "trained_fraction": student.num_trainable / unet_params, "train_seconds": round(train_seconds, 1),
        "stop": stop, "config": config.to_dict(),
    })
    _save_result(student, run_folder.result_folder(tmp), {"method": config.method, "generator": "lfw-faces",
                                            "person": names[0] if len(names) == 1 else None, "people": names,
                                            "config": config.to_dict()})
    if student.adapters is not None:
        student.adapters.detach()
    for name, rows in grids.items():  # a row per strength / before, after; 12 faces a row
        save_grid(torch.cat(rows), tmp / f"{name}.png", nrow=rows[0].shape[0])
    (tmp / "dial.png").write_bytes(_dial_plot(metrics["sweep"], f"{config.method}: forgetting "
                                              + (names[0] if len(names) == 1 else f"{len(names)} people")))
    metrics["wall_seconds"] = round(time.time() - t_start, 1)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    run_folder.finish(work, out)
    return metrics


def load_result(run_folder: str | Path, generator: str | Path | None = None):
    """(world, unet, person index): the shipped (or given) world with a run's result applied to its UNet."""
    from legato.lfwfaces.world import load_world

    run_folder = Path(run_folder)
    result = run_folder / "adapter" if (run_folder / "adapter").is_dir() else run_folder
    try:
        metrics = json.loads((run_folder / "metrics.json").read_text())
        method, names = metrics["method"], metrics.get("people") or [metrics["person"]]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{run_folder}: not an lfw-faces run folder (metrics.json: {e})") from e
    world = load_world(generator)
    labels = [world.label_of(n) for n in names]
    person = labels[0] if len(labels) == 1 else labels
    if method in ("legato", "residual"):
        from legato.ode import load_bundle

        load_bundle(result, world.unet)
        return world, world.unet, person
    from safetensors.torch import load_file

    if method == "finetune":
        from diffusers import UNet2DModel

        unet = UNet2DModel.from_pretrained(str(result), torch_dtype=torch.float32, use_safetensors=True)
        return world, unet.eval().requires_grad_(False), person
    if method == "lora":
        from legato.unlearning.methods.modules import holds_peft_lora, load_peft_lora

        if holds_peft_lora(result):
            load_peft_lora(result, world.unet)
        else:  # a folder written before the shared format: the sites, no fingerprint
            from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

            from legato.lfwfaces.erase import _lora_targets

            cfg = json.loads((result / "adapter_config.json").read_text())
            inject_adapter_in_model(LoraConfig(r=cfg["r"], lora_alpha=cfg["lora_alpha"],
                                               target_modules=_lora_targets(world.unet, cfg["target_sites"])),
                                    world.unet)
            set_peft_model_state_dict(world.unet, load_file(str(result / "adapter_model.safetensors")))
        return world, world.unet.eval().requires_grad_(False), person
    edit = load_file(str(result / "embedding_edit.safetensors"))
    rows = edit["class_embedding.rows"] if "class_embedding.rows" in edit else edit["class_embedding.row"][None]
    with torch.no_grad():
        world.unet.class_embedding.weight[labels] = rows
    return world, world.unet, person


def load_dial(run_folder: str | Path, generator: str | Path | None = None):
    """(world, unet, person, set_strength): a run's result on the world's UNet with its dial, as the run had
    it (adapter strength, LoRA scale, the weights' or the embedding row's interpolation from the source)."""
    world, unet, person = load_result(run_folder, generator)
    method = json.loads((Path(run_folder) / "metrics.json").read_text())["method"]
    from legato.unlearning.methods.dials import DialGroup, PeftLoraScale, WeightInterpolation

    if method in ("legato", "residual"):
        from legato.ode import adapter_sets

        dial = DialGroup(adapter_sets(unet).values())
    elif method == "lora":
        dial = PeftLoraScale(unet)
    else:  # finetune, embedding: from the source's tensors to the result's
        from legato.lfwfaces.world import load_world

        dial = WeightInterpolation.of_changed(unet, dict(load_world(generator).unet.named_parameters()))

    def set_strength(s: float) -> None:
        dial.strength = s

    return world, unet, person, set_strength


@torch.no_grad()
def sweep(run_folder: str | Path, strengths=STRENGTHS, *, n: int = 48, seed: int = 0, judge=None,
          generator: str | Path | None = None, progress: bool = False, images: list | None = None) -> list[dict]:
    """The person's recognition rate (dlib) at each strength of a finished run's dial (several people: over
    `n` samples of each), from the noise the run judged them with (`seed + 201`), so strength 0 and 1 repeat
    the run's own rows when `n` matches."""
    from legato.lfwfaces.judge import DlibJudge
    from legato.lfwfaces.world import initial_noise, sample

    judge = judge or DlibJudge.shipped()
    world, unet, person, set_strength = load_dial(run_folder, generator)
    labels = torch.tensor(as_people(person), dtype=torch.long).repeat_interleave(n)
    noise = initial_noise(len(labels), world.size, seed + 201)
    rows = []
    for s in strengths:
        set_strength(float(s))
        x = sample(world, labels, noise=noise, unet=unet, progress=progress)
        if images is not None:  # the first 12 samples at each strength, for a picture
            images.append(x[:12])
        j = judge.judge(x)
        rec, total = int((j.recognised_as == labels).sum()), len(labels)
        rows.append({"strength": float(s), "recognition": rec / total, "recognition_ci": wilson(rec, total),
                     "face_found": float(j.found.float().mean())})
    set_strength(1.0)
    return rows


def run_folder_of(path: str | Path) -> Path | None:
    """The lfw-faces run folder that `path` (a run folder or its `adapter/`) belongs to, else None."""
    path = Path(path)
    for folder in (path, path.parent):
        try:
            if json.loads((folder / "metrics.json").read_text()).get("generator") == "lfw-faces":
                return folder
        except (OSError, ValueError, AttributeError):
            continue
    return None


def evaluate_run(run_folder: str | Path, *, strength: float = 1.0, n_forget: int | None = None,
                 n_other: int | None = None, seed: int = 0, judge=None, generator: str | Path | None = None,
                 progress: bool = True) -> dict:
    """`evaluate` a finished run again (other sample sizes, another strength): the run's dial at `strength`
    stands for "after". The sample sizes default to the run's own."""
    from types import SimpleNamespace

    from legato.lfwfaces.judge import DlibJudge
    from legato.lfwfaces.world import load_world

    judge = judge or DlibJudge.shipped()
    recorded = json.loads((Path(run_folder) / "metrics.json").read_text())
    n_forget = int(recorded.get("n_forget", 48)) if n_forget is None else n_forget
    n_other = int(recorded.get("n_other_per_person", 2)) if n_other is None else n_other
    world, unet, person, set_strength = load_dial(run_folder, generator)
    if judge.people != world.people:
        raise InputError("the judge's reference names other people than this generator")
    student = SimpleNamespace(people=as_people(person), unet=unet, teacher=load_world(generator).unet,
                              set_strength=lambda s: set_strength(s * strength))
    metrics, _ = evaluate(world, student, judge, n_forget=n_forget, n_other=n_other, strengths=(0.0, 1.0),
                          seed=seed, progress=progress)
    return {**metrics, "strength": strength, "generator": "lfw-faces", "method": recorded["method"],
            "run": str(run_folder), "judge": "dlib (lfw-faces reference)"}
