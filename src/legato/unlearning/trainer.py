"""The image generators' objective (GUIDE-style: local, adjacency, global, the path dial) and `train`, which
runs it through the one training loop (`unlearning.loop`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from legato.errors import TrainingError
from legato.unlearning import loop
from legato.unlearning.config import UnlearnConfig
from legato.unlearning.loop import CHECKPOINT, LOG, TrainResult  # noqa: F401 (the run folder's names)
from legato.unlearning.losses import identity_loss
from legato.unlearning.methods import Trainable
from legato.unlearning.targets import adjacent_directions


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
        gate = trainable.membership_loss(row < n_open, row >= n_loc, zero)
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
    objective = ImageObjective(source, trainable, ws_u, ws_t, config, identity_model=identity_model,
                               perceptual=perceptual, alpha_max=alpha_max, draws=draws, dial_ws=dial_ws)
    return loop.run(objective, config, work, threshold=threshold, resume=resume, progress=progress,
                    quick_scores=quick_scores, forget_check=forget_check, stop_check=stop_check)


class ImageObjective:
    """The GUIDE-style objective of an image generator with latents (`Generator`): per iteration a camera,
    adjacency and global latents, the local / adjacency / global terms (and the path dial's) against the
    frozen source, micro-batched; the trainable's own terms (trajectory, gate) come with its forward."""

    def __init__(self, source, trainable: Trainable, ws_u, ws_t, config: UnlearnConfig, *, identity_model,
                 perceptual, alpha_max: float, draws=None, dial_ws=None) -> None:
        self.source, self.trainable, self.ws_u, self.ws_t, self.config = source, trainable, ws_u, ws_t, config
        self.identity_model, self.perceptual, self.alpha_max = identity_model, perceptual, alpha_max
        self.draws, self.dial_ws = draws, dial_ws
        self.name = config.method
        self.model = trainable.unlearned
        self.params = trainable.params
        self.n_adj = 0 if trainable.local_only else config.n_adjacent
        self.n_glob = 0 if trainable.local_only else config.n_global
        self.views = source.views(11).to(ws_u.device)
        self._was_training = self.model.training

    def state_dict(self) -> dict:
        return self.trainable.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainable.load_state_dict(state)

    def setup(self) -> None:
        for hook in self.trainable.on_setup:  # a field's preparation at every start (the keyed field's keys)
            hook(self)

    def begin(self, start: int) -> None:
        # training mode while training, as the reference code (`generator.train()`): the StyleGAN2 / EG3D
        # layers then use the unfused modulated convolution (`fused_modconv="inference_only"`), the same
        # values rounded as in the reference (benchmarks/parity_objective.py)
        self._was_training = self.model.training
        self.model.train()
        if self.trainable.prepare is not None and start == 0:  # a resumed run has it in the checkpoint
            c, w = self.config, self.config.weights
            self.trainable.prepare(lambda: _backward_local_loss(
                self.source, self.trainable, self.ws_u, self.ws_t, self.views, w, self.perceptual,
                self.identity_model, c.identity_crop))

    def end(self) -> None:
        self.model.train(self._was_training)

    def progress_info(self, losses: dict) -> str:
        return f"loss {losses['total']:.4f} (local {losses['local']:.4f})"

    def step(self, step: int, rng: torch.Generator) -> dict:
        source, trainable, config, ws_u, ws_t = self.source, self.trainable, self.config, self.ws_u, self.ws_t
        w, perceptual, identity_model, dial_ws = config.weights, self.perceptual, self.identity_model, self.dial_ws
        n_adj, n_glob, device = self.n_adj, self.n_glob, ws_u.device
        drawn = self.draws(step) if self.draws is not None else draw_iteration(
            source, config, rng, self.views, n_adj, n_glob, self.alpha_max, ws_u.shape[0],
            n_dial=0 if dial_ws is None else dial_ws.shape[1])
        c = drawn.camera.to(device)
        with torch.no_grad():
            ws_r = source.mapping(drawn.z.to(device)) if n_adj + n_glob else ws_u[:0]
        inp_u, inp_s, n_tgt = iteration_latents(ws_u, ws_t, drawn, ws_r, n_adj)
        cams = c.expand(inp_u.shape[0], -1)
        n_all = inp_u.shape[0]
        chunk = min(config.micro_batch or n_all, n_all)
        losses = dict.fromkeys(("total", "local", "adjacency", "global", "trajectory", "gate"), 0.0)
        for a in range(0, n_all, chunk):  # gradients accumulate over the chunks; one step per iteration
            terms = _chunk_terms(source, trainable, inp_u, inp_s, cams, (a, min(a + chunk, n_all)), n_tgt + n_adj,
                                 n_all, w, perceptual, identity_model, config.reduction, config.identity_crop,
                                 n_tgt, n_tgt + (n_adj if config.gate_positives == "neighbourhood" else 0))
            for key, value in terms.items():
                losses[key] += value.item()
            if not math.isfinite(losses["total"]):
                raise TrainingError(f"the loss became {losses['total']} at step {step}")
            terms["total"].backward()
        if dial_ws is not None and drawn.dial is not None:
            dial = w.local * _dial_term(source, trainable, ws_u, dial_ws, drawn, cams, w, perceptual,
                                        identity_model, config.identity_crop)
            losses["dial"] = dial.item()
            losses["total"] += losses["dial"]
            if not math.isfinite(losses["total"]):
                raise TrainingError(f"the loss became {losses['total']} at step {step} (the dial's term)")
            dial.backward()
        return losses
