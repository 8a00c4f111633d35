"""The training loop shared by every method: losses, logging, collapse curve, checkpoints, resume."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from legato.errors import TrainingError
from legato.files import atomic_write_bytes
from legato.unlearning.config import UnlearnConfig
from legato.unlearning.losses import identity_loss
from legato.unlearning.methods import Trainable
from legato.unlearning.targets import adjacent_directions

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


@dataclass
class TrainResult:
    steps: int
    seconds: float  # training wall time, without the quick scores' evaluation time
    seconds_to_forget: float | None  # training time until the quick id_target first fell below the threshold
    step_to_forget: int | None
    final_losses: dict
    stopped_early: bool = False  # the forget check held `stop_patience` times in a row before `iterations`
    stop_record: dict | None = None  # the last stop check's scores


@dataclass
class IterationDraws:
    """The random values of one iteration: the training camera `[1, c_dim]`, the z's of the adjacency and
    global latents `[n_adjacent + n_global, z_dim]` (adjacency first), the adjacency α's `[n_adjacent]` and,
    when a run forgets more people than it takes per step, which of them this step takes (`targets`, `[k]`
    indices; None: all).

    `train(..., draws=...)` accepts them from outside (the parity harness feeds the reference code's draws
    to both implementations); by default `draw_iteration` makes them from the run's RNG.
    """

    camera: torch.Tensor
    z: torch.Tensor
    alphas: torch.Tensor
    targets: torch.Tensor | None = None
    dial: int | None = None  # dial="path": which of `targets.DIAL_STRENGTHS` this step trains


def draw_iteration(source, config: UnlearnConfig, rng: torch.Generator, views: torch.Tensor, n_adj: int,
                   n_glob: int, alpha_max: float, n_targets: int = 1, n_dial: int = 0) -> IterationDraws:
    """One iteration's draws from `rng`, in a fixed order (camera, z's, α's, then the targets' subset) so
    that a resumed run repeats them; a run with one person draws exactly what it drew before there could be
    several."""
    if config.training_camera == "continuous":  # a yaw anywhere in the evaluation range
        camera = source.view_at(torch.rand(1, generator=rng).item())
    else:
        camera = views[torch.randint(0, views.shape[0], (1,), generator=rng)]
    z = torch.randn(n_adj + n_glob, source.z_dim, generator=rng)
    alphas = torch.rand(n_adj, generator=rng) * alpha_max
    targets = None
    if n_targets > config.targets_per_step:  # a fresh subset of the people each step
        targets = torch.randperm(n_targets, generator=rng)[:config.targets_per_step]
    dial = int(torch.randint(0, n_dial, (1,), generator=rng)) if n_dial else None  # drawn last: runs without
    # a trained dial draw what they drew before
    return IterationDraws(camera, z, alphas, targets, dial)


def iteration_latents(ws_u: torch.Tensor, ws_t: torch.Tensor, drawn: IterationDraws, ws_r: torch.Tensor,
                      n_adj: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The latents of one iteration for the unlearned and the source model, and how many of them are targets.

    Rows: the step's targets (the forgotten latents for the unlearned model, their UFO targets for the
    source), then `n_adj` adjacency latents (target + α·direction towards a random latent; adjacency latent j
    belongs to the step's target j mod k), then the global latents. One person: [w_u, w_u + δ…, w_r…].
    """
    picked = (torch.arange(ws_u.shape[0]) if drawn.targets is None else drawn.targets).to(ws_u.device)
    k = picked.numel()
    owners = picked[torch.arange(n_adj, device=ws_u.device) % k]
    delta = (drawn.alphas.to(ws_u.device).view(-1, 1, 1) * adjacent_directions(ws_u[owners], ws_r[:n_adj])
             if n_adj else ws_r[:0])
    inp_u = torch.cat([ws_u[picked], ws_u[owners] + delta, ws_r[n_adj:]])
    inp_s = torch.cat([ws_t[picked], ws_t[owners] + delta, ws_r[n_adj:]])
    return inp_u, inp_s, k


def _save_checkpoint(work: Path, step: int, trainable: Trainable, opt, rng: torch.Generator, elapsed: float,
                     forget: tuple, passes: int = 0) -> None:
    import io

    buf = io.BytesIO()
    torch.save({
        "step": step,
        "trainable": trainable.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": rng.get_state(),
        "torch_rng": torch.get_rng_state(),
        "elapsed": elapsed,
        "forget": list(forget),
        "stop_passes": passes,
    }, buf)
    atomic_write_bytes(work / CHECKPOINT, buf.getvalue())


def _load_checkpoint(work: Path):
    path = work / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _truncate_log(path: Path, last_step: int) -> None:
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    atomic_write_bytes(path, ("\n".join(keep) + ("\n" if keep else "")).encode())


def _render(gen, ws, cams, n_loc: int, want_features: bool):
    """Images of all rows and features of the first `n_loc` rows, in one pass when the backend can."""
    if not want_features:
        return gen.synthesis(ws, cams), None
    img, feats = gen.synthesis_with_features(ws, cams)
    return img, feats[:n_loc]


def _local_terms(pair, sl: slice, w, perceptual, identity_model, crop: str = "align") -> torch.Tensor:
    """Perceptual + identity + feature-MSE between the unlearned and source outputs of rows `sl`."""
    img_u, img_s, feat_u, feat_s = pair
    t = w.perceptual * perceptual(img_u[sl], img_s[sl])
    if w.identity:
        t = t + w.identity * identity_loss(identity_model, img_u[sl], img_s[sl], crop)
    if feat_u is not None:
        t = t + w.feature * F.mse_loss(feat_u[sl], feat_s[sl])
    return t


def _share(term: torch.Tensor, part: int, whole: int) -> torch.Tensor:
    """`term` (a mean over `part` rows) weighted as its part of a mean over `whole` rows."""
    return term if part == whole else term * (part / whole)


def _chunk_terms(source, trainable: Trainable, inp_u, inp_s, cams, rows: tuple[int, int], n_loc: int, n_all: int,
                 w, perceptual, identity_model, reduction: str = "mean",
                 identity_crop: str = "align", n_targets: int = 1,
                 n_gate_open: int | None = None) -> dict[str, torch.Tensor]:
    """Render rows [a, b) of the iteration's latents and return their share of every loss term.

    Every term is a mean over its rows (local: the first `n_targets` rows, the forgotten latents; adjacency:
    rows n_targets..n_loc−1; global: the rest; trajectory: all rows, recorded per forward call), so a
    chunk's share is its mean weighted by the fraction of the term's rows it holds, and the shares of all
    chunks sum to the whole batch's terms. With `reduction="sum"` (the reference code) the adjacency and
    global terms are sums over their rows; the reference trajectory term reads the forgotten latent (row 0,
    in the first chunk) alone. The gated field's membership term opens the gate for the first `n_gate_open`
    rows (default: the forgotten latents) and shuts it for the global rows; the last chunk carries all of
    it (the gate reads latents only, recorded by every chunk's forward pass).
    """
    a, b = rows
    loc = max(0, min(b, n_loc) - a)  # rows of this chunk with local terms (and features)
    img_u, feat_u = _render(trainable.unlearned, inp_u[a:b], cams[a:b], loc, bool(w.feature) and loc > 0)
    with torch.no_grad():
        img_s, feat_s = _render(source, inp_s[a:b], cams[a:b], loc, bool(w.feature) and loc > 0)
    pair = (img_u, img_s, feat_u, feat_s)
    zero = img_u.new_zeros(())
    tgt = max(0, min(b, n_targets) - a)  # rows of this chunk that are forgotten latents
    local = _share(_local_terms(pair, slice(0, tgt), w, perceptual, identity_model, identity_crop), tgt,
                   n_targets) if tgt else zero
    adj_lo = tgt
    adjacency = _share(_local_terms(pair, slice(adj_lo, loc), w, perceptual, identity_model, identity_crop),
                       loc - adj_lo, n_loc - n_targets) if loc > adj_lo else zero
    n_glob = b - a - loc
    global_ = _share(perceptual(img_u[loc:], img_s[loc:]), n_glob, n_all - n_loc) if n_glob else zero
    if reduction == "sum":
        adjacency, global_ = adjacency * (n_loc - 1), global_ * (n_all - n_loc)
    if trainable.trajectory_mode == "reference":
        trajectory = trainable.trajectory_loss(local, forgotten_row=0 if a == 0 else None)
    else:
        trajectory = _share(trainable.trajectory_loss(local), b - a, n_all)
    if b == n_all:  # the membership term once per iteration, from the conditions every chunk recorded (its
        # negatives are drawn once, so chunks give the whole batch's term, gradients and random draws)
        row = torch.arange(n_all, device=img_u.device)
        n_open = n_targets if n_gate_open is None else n_gate_open
        gate = trainable.gate_loss(row < n_open, row >= n_loc, zero)
    else:
        gate = zero
    total = (w.local * local + w.adjacency * adjacency + w.global_ * global_ + w.trajectory * trajectory
             + w.gate * gate)
    return {"total": total, "local": local, "adjacency": adjacency, "global": global_, "trajectory": trajectory,
            "gate": gate}


def _dial_term(source, trainable: Trainable, ws_u, dial_ws, drawn: IterationDraws, cams, w, perceptual,
               identity_model, crop: str) -> torch.Tensor:
    """dial="path": the local terms of the step's forgotten latents at the drawn intermediate strength,
    against the source's images of the path latents for that strength (`targets.dial_path`). The forward
    at that strength records trajectory terms and gate conditions; they are dropped, so the iteration's own
    terms stay those of the full-strength forward."""
    from legato.unlearning.targets import DIAL_STRENGTHS

    picked = (torch.arange(ws_u.shape[0]) if drawn.targets is None else drawn.targets).to(ws_u.device)
    saved = trainable.dial.strength
    trainable.dial.strength = DIAL_STRENGTHS[drawn.dial]
    try:
        img_u, feat_u = _render(trainable.unlearned, ws_u[picked], cams[:picked.numel()], picked.numel(),
                                bool(w.feature))
    finally:
        trainable.dial.strength = saved
    if trainable.adapter_set is not None:
        trainable.adapter_set.trajectory_consistency()
        trainable.adapter_set.gate_conditions()
    with torch.no_grad():
        img_s, feat_s = _render(source, dial_ws[picked, drawn.dial], cams[:picked.numel()], picked.numel(),
                                bool(w.feature))
    return _local_terms((img_u, img_s, feat_u, feat_s), slice(0, picked.numel()), w, perceptual, identity_model,
                        crop)


SALIENCY_TARGETS = 16  # people whose local loss gives SalUn's saliency when a run forgets more


def _backward_local_loss(source, trainable: Trainable, ws_u, ws_t, views, w, perceptual, identity_model,
                         crop: str) -> None:
    """The local term at every evaluation view, back-propagated into `.grad` (a method's `prepare`: SalUn's
    saliency); one latent and view at a time, so memory stays that of one latent."""
    n = min(ws_u.shape[0], SALIENCY_TARGETS)
    for j in range(n):
        for i in range(views.shape[0]):
            cam = views[i:i + 1]
            img_u, feat_u = _render(trainable.unlearned, ws_u[j:j + 1], cam, 1, bool(w.feature))
            with torch.no_grad():
                img_s, feat_s = _render(source, ws_t[j:j + 1], cam, 1, bool(w.feature))
            loss = _local_terms((img_u, img_s, feat_u, feat_s), slice(0, 1), w, perceptual, identity_model, crop)
            (loss / (views.shape[0] * n)).backward()


def _remember_forgotten(trainable: Trainable, ws_u: torch.Tensor, camera: torch.Tensor, chunk: int = 16,
                        source=None, identity_model=None) -> None:
    """The keyed field's gate opens at the forgotten latents: give it the latent each site sees for each of
    them (at every start, a resumed one too: the keys follow from `ws_u`, the checkpoint holds none). In the
    identity and embedding spaces it also needs its map, fitted on `source` at the same view from seeded
    latents, so a resumed or extended run fits the same map."""
    adapter_set = trainable.adapter_set
    if adapter_set is None or adapter_set.config.field != "keyed":
        return
    field = adapter_set.adapter(adapter_set.sites[0]).field
    if field.awaits_map:
        from legato.unlearning.gate_space import embedding_map, identity_projection

        center, scale = adapter_set.gate_standardisation()
        if field.space == "embedding":
            adapter_set.set_gate_embedding_map(embedding_map(source, identity_model, center, scale, camera))
        else:
            adapter_set.set_gate_projection(identity_projection(source, identity_model, center, scale, camera))
    parts = []
    for a in range(0, ws_u.shape[0], chunk):
        rows = ws_u[a:a + chunk]
        parts.append(adapter_set.site_conditions(
            lambda rows=rows: trainable.unlearned.synthesis(rows, camera.expand(rows.shape[0], -1))))
    adapter_set.set_gate_keys({site: torch.cat([p[site] for p in parts]) for site in parts[0]})


def train(
    source,
    trainable: Trainable,
    ws_u: torch.Tensor,
    ws_t: torch.Tensor,
    config: UnlearnConfig,
    *,
    identity_model,
    perceptual,
    threshold: float | None = None,
    alpha_max: float,
    work: Path,
    resume: bool = False,
    progress: bool = True,
    quick_scores=None,
    forget_check=None,
    draws: Callable[[int], IterationDraws] | None = None,
    dial_ws: torch.Tensor | None = None,
    stop_check: Callable | None = None,
) -> TrainResult:
    """Train `trainable` so that the unlearned generator at `ws_u` looks like the source at `ws_t`.

    `ws_u`, `ws_t`: `[N, num_ws, w_dim]`, one row per person to forget; each step takes
    `config.targets_per_step` of them (all when N is at most that), with their adjacency latents.

    `quick_scores(unlearned) -> dict(id_target, id_preservation)` is called every `eval_every` steps for
    the collapse curve. `forget_check(unlearned) -> id_target` (cheaper: the target alone) is called after
    every step until the target first falls below `threshold`, so the time to forget is measured to the
    step. Neither call counts as training time. Checkpoints go to `work/checkpoint.pt`, logs to
    `work/log.jsonl`. `draws(step) -> IterationDraws` replaces the run's own random draws (a seam for
    checks against other implementations). `dial_ws` `[N, len(DIAL_STRENGTHS), num_ws, w_dim]`: the source
    latents each intermediate strength is trained towards (dial="path"; needs a method with a dial).
    `stop_check(unlearned) -> dict` (with `passed`: bool) runs every `config.stop_every` steps when
    `config.early_stop`; training ends after `config.stop_patience` passes in a row. It must not use the
    judge (the run hands it the loss's model). Its time, like the quick scores', is not training time.
    """
    unlearned = trainable.unlearned
    w = config.weights
    opt = torch.optim.Adam(trainable.params, lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    start, elapsed_before = 0, 0.0
    forget_step, forget_seconds = None, None
    passes, stopped, stop_record = 0, False, None
    log_path = work / LOG
    if resume:
        ckpt = _load_checkpoint(work)
        if ckpt is not None:
            trainable.load_state_dict(ckpt["trainable"])
            opt.load_state_dict(ckpt["optimizer"])
            rng.set_state(ckpt["rng"])
            torch.set_rng_state(ckpt["torch_rng"])
            start, elapsed_before = int(ckpt["step"]), float(ckpt["elapsed"])
            forget_step, forget_seconds = ckpt["forget"] if ckpt["forget"] else (None, None)
            passes = int(ckpt.get("stop_passes", 0))
            _truncate_log(log_path, start)
    elif log_path.exists():
        log_path.unlink()
    device = ws_u.device
    local_only = trainable.local_only
    n_adj = 0 if local_only else config.n_adjacent
    n_glob = 0 if local_only else config.n_global
    views = source.views(11).to(device)
    _remember_forgotten(trainable, ws_u, views[:1], source=source, identity_model=identity_model)

    t0 = time.perf_counter()
    losses: dict = {}
    step = completed = start
    rng_at_start = rng.get_state()

    eval_seconds = 0.0  # the quick scores measure the run; their time is not training time

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0 - eval_seconds

    def measure(score):
        """`score(unlearned)` without gradients, its time kept off the training clock."""
        nonlocal eval_seconds
        t_eval = time.perf_counter()
        with torch.no_grad():
            value = score(unlearned)
        eval_seconds += time.perf_counter() - t_eval
        return value

    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False)
        bar.start()
        task = bar.add_task(f"unlearning ({config.method})", total=config.iterations, completed=start, info="")
    log_file = open(log_path, "a")  # noqa: SIM115 (kept open for the whole loop)
    # training mode while training, as the reference code (`generator.train()`): the StyleGAN2 / EG3D layers
    # then use the unfused modulated convolution (`fused_modconv="inference_only"`), the same values rounded
    # as in the reference (benchmarks/parity_objective.py)
    was_training = unlearned.training
    unlearned.train()
    if trainable.prepare is not None and start == 0:  # (counted as training time; a resumed run has its
        # prepared state in the checkpoint)
        trainable.prepare(lambda: _backward_local_loss(source, trainable, ws_u, ws_t, views, w, perceptual,
                                                       identity_model, config.identity_crop))
    try:
        for step in range(start + 1, config.iterations + 1):
            rng_at_start = rng.get_state()
            drawn = draws(step) if draws is not None else draw_iteration(
                source, config, rng, views, n_adj, n_glob, alpha_max, ws_u.shape[0],
                n_dial=0 if dial_ws is None else dial_ws.shape[1])
            c = drawn.camera.to(device)
            with torch.no_grad():
                ws_r = source.mapping(drawn.z.to(device)) if n_adj + n_glob else ws_u[:0]
            inp_u, inp_s, n_tgt = iteration_latents(ws_u, ws_t, drawn, ws_r, n_adj)
            cams = c.expand(inp_u.shape[0], -1)
            n_all = inp_u.shape[0]
            chunk = min(config.micro_batch or n_all, n_all)
            opt.zero_grad(set_to_none=True)
            losses = dict.fromkeys(("total", "local", "adjacency", "global", "trajectory", "gate"), 0.0)
            for a in range(0, n_all, chunk):  # gradients accumulate over the chunks; one step per iteration
                terms = _chunk_terms(source, trainable, inp_u, inp_s, cams, (a, min(a + chunk, n_all)), n_tgt + n_adj,
                                     n_all, w, perceptual, identity_model, config.reduction, config.identity_crop,
                                     n_tgt, n_tgt + (n_adj if config.gate_positives == "neighbourhood" else 0))
                for key, value in terms.items():
                    losses[key] += value.item()
                if not math.isfinite(losses["total"]):
                    raise TrainingError(
                        f"the loss became {losses['total']} at step {step}; lower --lr (now {config.lr}) and rerun "
                        f"with --resume to continue from the last checkpoint"
                    )
                terms["total"].backward()
            if dial_ws is not None and drawn.dial is not None:
                dial = w.local * _dial_term(source, trainable, ws_u, dial_ws, drawn, cams, w, perceptual,
                                            identity_model, config.identity_crop)
                losses["dial"] = dial.item()
                losses["total"] += losses["dial"]
                if not math.isfinite(losses["total"]):
                    raise TrainingError(f"the loss became {losses['total']} at step {step} (the dial's term); "
                                        f"lower --lr (now {config.lr}) and rerun with --resume")
                dial.backward()
            opt.step()
            completed = step
            record = None
            if step % config.log_every == 0 or step == config.iterations:
                record = {"step": step, "seconds": round(elapsed(), 3), **{k: round(v, 6) for k, v in losses.items()}}
            checking = forget_check is not None and forget_step is None and threshold is not None
            if checking and measure(forget_check) < threshold:
                forget_step, forget_seconds = step, elapsed()
            if quick_scores is not None and (step % config.eval_every == 0 or step == config.iterations):
                scores = measure(quick_scores)
                record = {**(record or {"step": step, "seconds": round(elapsed(), 3)}), **scores}
                if forget_step is None and threshold is not None and scores["id_target"] < threshold:
                    forget_step, forget_seconds = step, elapsed()
            if stop_check is not None and config.early_stop and step % config.stop_every == 0:
                stop_record = measure(stop_check)
                passes = passes + 1 if stop_record["passed"] else 0
                stopped = passes >= config.stop_patience
                record = {**(record or {"step": step, "seconds": round(elapsed(), 3)}),
                          "stop_check": {k: v for k, v in stop_record.items()}, "stop_passes": passes}
            if record is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if step % config.checkpoint_every == 0:
                _save_checkpoint(work, step, trainable, opt, rng, elapsed(), (forget_step, forget_seconds)
                                 if forget_step is not None else (), passes)
            if bar is not None:
                bar.update(task, completed=step, info=f"loss {losses['total']:.4f} (local {losses['local']:.4f})")
            if stopped:
                break
    except KeyboardInterrupt:
        # keep exactly the completed steps: the RNG goes back to the start of an unfinished step
        if completed < step:
            rng.set_state(rng_at_start)
        _save_checkpoint(work, completed, trainable, opt, rng, elapsed(),
                         (forget_step, forget_seconds) if forget_step is not None else (), passes)
        raise
    finally:
        unlearned.train(was_training)
        log_file.close()
        if bar is not None:
            bar.stop()
    return TrainResult(completed, elapsed(), forget_seconds, forget_step, losses, stopped, stop_record)
