"""Recipe for the SynthFaces identity encoder: CosFace over a few thousand random identities, rendered on
the fly under random nuisance and camera, with augmentation that mimics generator outputs; then the
verification threshold is chosen on held-out people (seeds ≥ 1_000_000) and the result is measured on
other held-out people.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from legato.synthfaces.identity_encoder import IdentityEncoder, save_identity_model
from legato.synthfaces.params import N_IDENTITY, random_camera, random_identity, random_nuisance
from legato.synthfaces.renderer import render
from legato.synthfaces.world import HELD_OUT_SEED, photos
from legato.training_state import load_checkpoint, save_checkpoint, warmup_cosine


@dataclass
class IdentityTrainConfig:
    """Defaults of the shipped recipe (measured in docs/reference/synthfaces.md)."""

    n_identities: int = 2000  # training classes, drawn from random_identity (never from seeds)
    ids_per_batch: int = 32
    photos_per_id: int = 4
    steps: int = 1000
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: int = 50
    scale: float = 30.0  # CosFace s
    margin: float = 0.35  # CosFace m (the CosFace paper's default)
    aux_weight: float = 1.0  # auxiliary regression of the identity parameters from the features
    inbatch_weight: float = 1.0  # the same margin loss against leave-one-out class centroids of the batch
    proxy_lr_mult: float = 10.0  # class proxies see few positives per step; they learn faster
    checkpoint_every: int = 100
    eval_pairs: int = 1000
    # the network and what it sees (the judge recipe below changes all three)
    widths: tuple[int, int, int, int] = (24, 48, 96, 160)
    embed_dim: int = 128
    augmentation: str = "generator"  # "generator" (`augment`) | "judge" (`augment_judge`)
    name: str = "synthfaces-id"


# The independent judge of SynthFaces (docs/reference/metrics-and-verdicts.md, "Who judges"): another width,
# another seed (so other training people and other renders), another augmentation, trained from scratch.
# Nothing but judging uses it: no loss, gate, target, threshold or default is chosen with it.
JUDGE_CONFIG = dict(widths=(32, 64, 96, 128), embed_dim=96, augmentation="judge", n_identities=3000,
                    name="synthfaces-judge")
JUDGE_SEED = 101


# ----------------------------------------------------------------------------------------------------------
# Augmentation: what a generator does to a render (blur, noise, small misalignment, lossy softening).


def augment(x: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random per-image blur, JPEG-like softening, shift/scale/rotation, contrast and noise on `[B,3,H,W]`."""
    b = x.shape[0]
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    ang = (r(b) * 2 - 1) * math.radians(4) * strength
    sc = 1.0 + (r(b) * 2 - 1) * 0.07 * strength
    tx, ty = ((r(b) * 2 - 1) * 0.06 * strength for _ in range(2))
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :] / 16.0).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    x = torch.lerp(x, blurred, (r(b) * strength).clamp(0, 1).view(b, 1, 1, 1))
    small = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
    soft = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    x = torch.lerp(x, soft, ((r(b) < 0.3 * strength).float() * r(b)).view(b, 1, 1, 1))
    contrast = 1.0 + (r(b, 1, 1, 1) * 2 - 1) * 0.08 * strength
    bright = (r(b, 1, 1, 1) * 2 - 1) * 0.06 * strength
    x = x * contrast + bright
    x = x + torch.randn(x.shape, generator=g) * (r(b, 1, 1, 1) * 0.05 * strength)
    return x.clamp(-1.0, 1.0)


def augment_judge(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The judge's own augmentation on `[B,3,H,W]`: a random lower resolution (down to 28²), Gaussian-like
    blur of random width, colour jitter per channel, a small random erased patch, shift, and noise — other
    transformations than `augment`'s, so the two encoders do not share their invariances by construction."""
    b, _, h, w = x.shape
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    shift = (r(b, 2) * 2 - 1) * 0.05
    theta = torch.zeros(b, 2, 3)
    scale = 1.0 + (r(b) * 2 - 1) * 0.05
    theta[:, 0, 0], theta[:, 1, 1] = scale, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out = []
    for i in range(b):  # half the images: a resolution between 28² and 64²
        side = int(28 + r(1).item() * 36) if r(1).item() < 0.5 else h
        xi = x[i : i + 1]
        if side < h:
            xi = F.interpolate(xi, size=(side, side), mode="area")
            xi = F.interpolate(xi, size=(h, w), mode="bicubic", align_corners=False)
        out.append(xi)
    x = torch.cat(out)
    sigma = r(b) * 0.9 + 1e-3
    t = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)  # [B, 5]
    xs = F.pad(x, (2, 2, 2, 2), mode="replicate")
    rows = sum(k1[:, j].view(b, 1, 1, 1) * xs[:, :, :, j : j + w] for j in range(5))
    x = sum(k1[:, j].view(b, 1, 1, 1) * rows[:, :, j : j + h, :] for j in range(5))
    gain = 1.0 + (r(b, 3, 1, 1) * 2 - 1) * 0.1
    offset = (r(b, 3, 1, 1) * 2 - 1) * 0.08
    x = x * gain + offset
    erase = r(b) < 0.3  # a 10×10 patch set to grey in some images
    ys, xs_ = (r(b) * (h - 10)).long(), (r(b) * (w - 10)).long()
    for i in torch.nonzero(erase).flatten().tolist():
        x[i, :, ys[i] : ys[i] + 10, xs_[i] : xs_[i] + 10] = 0.0
    x = x + torch.randn(x.shape, generator=g) * (r(b, 1, 1, 1) * 0.03)
    return x.clamp(-1.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# Held-out verification pairs and the best threshold.


def verification_pairs(n: int, first_seed: int = HELD_OUT_SEED, seed: int = 0) -> tuple:
    """`n` genuine pairs (two photos of one person, other nuisance and camera) and `n` impostor pairs of
    held-out people `first_seed + i`; returns (a, b, same) with images `[2n, 3, 64, 64]`, same `[2n]` bool."""
    a, b = [], []
    for i in range(n):
        two = photos(first_seed + i, 2, seed=seed)
        a.append(two[0])
        b.append(two[1])
    for i in range(n):
        a.append(photos(first_seed + i, 1, seed=seed + 1)[0])
        b.append(photos(first_seed + n + i, 1, seed=seed + 1)[0])
    same = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    return torch.stack(a), torch.stack(b), same


def best_threshold(sims: torch.Tensor, same: torch.Tensor) -> tuple[float, float]:
    """The most accurate cosine threshold (median of the tied best ones) and its pair accuracy."""
    order = torch.sort(sims).values
    cands = torch.cat([order[:1] - 1e-4, (order[1:] + order[:-1]) / 2, order[-1:] + 1e-4])
    acc = ((sims[None, :] >= cands[:, None]) == same[None, :]).float().mean(1)
    best = acc.max()
    idx = torch.nonzero(acc == best).flatten()
    i = int(idx[(idx.numel() - 1) // 2])  # ties: the median best candidate
    return float(cands[i]), float(best)


@torch.no_grad()
def pair_similarities(
    model: IdentityEncoder, a: torch.Tensor, b: torch.Tensor, batch: int = 256
) -> torch.Tensor:
    model.eval()
    return torch.cat(
        [model.similarity(a[i : i + batch], b[i : i + batch]) for i in range(0, a.shape[0], batch)]
    )


def evaluate(model: IdentityEncoder, n_pairs: int = 1000, threshold_seed: int = 1_500_000,
             augmentation=None) -> dict:
    """Choose the threshold on held-out people from `threshold_seed`, measure on people from 1_000_000.

    The threshold is the most accurate one over the validation pairs, counted twice: as rendered, and with
    the first photo of each pair degraded by the training augmentation (what a generator's image looks
    like to the encoder), so that it also holds for generated images.
    """
    va, vb, vsame = verification_pairs(n_pairs, first_seed=threshold_seed, seed=7)
    augmentation = augmentation or augment
    va_aug = augmentation(va, torch.Generator().manual_seed(11))
    val_sims = torch.cat([pair_similarities(model, va, vb), pair_similarities(model, va_aug, vb)])
    thr, val_acc = best_threshold(val_sims, torch.cat([vsame, vsame]))
    ta, tb, tsame = verification_pairs(n_pairs, first_seed=HELD_OUT_SEED, seed=0)
    sims = pair_similarities(model, ta, tb)
    aug_sims = pair_similarities(model, augmentation(ta, torch.Generator().manual_seed(12)), tb)
    best_thr, best_acc = best_threshold(sims, tsame)
    return {
        "threshold": thr,
        "threshold_val_accuracy": val_acc,
        "test_accuracy_at_threshold": float(((sims >= thr) == tsame).float().mean()),
        "test_augmented_accuracy_at_threshold": float(((aug_sims >= thr) == tsame).float().mean()),
        "test_best_threshold": best_thr,
        "test_best_accuracy": best_acc,
        "genuine_mean_cos": float(sims[tsame].mean()),
        "genuine_min_cos": float(sims[tsame].min()),
        "impostor_mean_cos": float(sims[~tsame].mean()),
        "impostor_max_cos": float(sims[~tsame].max()),
        "pairs": n_pairs,
    }


# ----------------------------------------------------------------------------------------------------------


def inbatch_cosface(emb: torch.Tensor, per_id: int, scale: float, margin: float) -> torch.Tensor:
    """CosFace against in-batch class centroids: `emb` `[P*K, D]` holds K consecutive photos per person; each
    photo's own centroid leaves it out, so the loss measures generalisation to a photo not yet seen."""
    p = emb.shape[0] // per_id
    e = emb.view(p, per_id, -1)
    sums = e.sum(1)  # [P, D]
    cent = F.normalize(sums, dim=1)
    own = F.normalize(sums[:, None, :] - e, dim=2)  # leave-one-out centroid [P, K, D]
    cos = emb @ cent.T  # [P*K, P]
    cos_own = (e * own).sum(2).reshape(-1)
    labels = torch.arange(p).repeat_interleave(per_id)
    cos = cos.scatter(1, labels[:, None], cos_own[:, None])
    logits = scale * (cos - margin * F.one_hot(labels, p))
    return F.cross_entropy(logits, labels)


class _Heads(nn.Module):
    """Training-only heads: CosFace class proxies and the auxiliary parameter regressor."""

    def __init__(self, n_classes: int, embed_dim: int, features: int):
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(n_classes, embed_dim) * 0.01)
        self.aux = nn.Linear(features, N_IDENTITY)


def _log(log_path: Path | None, record: dict) -> None:
    if log_path is not None:
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")


def train(
    out_path: str | Path,
    seed: int = 0,
    steps: int | None = None,
    log_path: str | Path | None = None,
    config: IdentityTrainConfig | None = None,
    checkpoint_path: str | Path | None = None,
) -> dict:
    """Train the identity encoder, choose its threshold, write `out_path` (safetensors); returns the metrics.

    Resumes from `checkpoint_path` (default: `<out_path>.ckpt` beside it, removed at the end) if present.
    """
    from tqdm import tqdm

    cfg = config or IdentityTrainConfig()
    if steps is not None:
        cfg.steps = int(steps)
    out_path = Path(out_path)
    ckpt = Path(checkpoint_path) if checkpoint_path else out_path.with_name(out_path.name + ".ckpt")
    log_path = Path(log_path) if log_path else None
    torch.manual_seed(seed)
    data_g = torch.Generator().manual_seed(seed)
    classes = random_identity(cfg.n_identities, data_g)
    from legato.synthfaces.identity_encoder import BackboneConfig

    model = IdentityEncoder(BackboneConfig(widths=tuple(cfg.widths)), embed_dim=cfg.embed_dim)
    model.name = cfg.name
    augmentation = {"generator": augment, "judge": augment_judge}[cfg.augmentation]
    heads = _Heads(cfg.n_identities, model.embed_dim, model.backbone.config.features)
    groups = [
        {"params": list(model.parameters()) + list(heads.aux.parameters()), "mult": 1.0},
        {"params": [heads.proxies], "mult": cfg.proxy_lr_mult, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    stateful, generators = {"model": model, "heads": heads, "opt": opt}, {"data_g": data_g}
    start, elapsed = load_checkpoint(ckpt, stateful, generators)
    model.train()
    t0 = time.time() - elapsed
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="identity", mininterval=10)
    for step in bar:
        lr = warmup_cosine(cfg.lr, step, cfg.warmup, cfg.steps)
        for group in opt.param_groups:
            group["lr"] = lr * group["mult"]
        cls = torch.randint(0, cfg.n_identities, (cfg.ids_per_batch,), generator=data_g)
        cls = cls.repeat_interleave(cfg.photos_per_id)
        n = cls.shape[0]
        x = render(classes[cls], random_nuisance(n, data_g), random_camera(n, data_g))
        x = augmentation(x, data_g)
        feats = model.features(x)
        emb = F.normalize(model.head(feats), dim=1)
        logits = emb @ F.normalize(heads.proxies, dim=1).T
        logits = cfg.scale * (logits - cfg.margin * F.one_hot(cls, cfg.n_identities))
        loss_cls = F.cross_entropy(logits, cls)
        loss_aux = F.mse_loss(heads.aux(feats), classes[cls])
        loss_inb = inbatch_cosface(emb, cfg.photos_per_id, cfg.scale, cfg.margin)
        loss = loss_cls + cfg.inbatch_weight * loss_inb + cfg.aux_weight * loss_aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == cfg.steps - 1:
            rec = {
                "step": step,
                "loss": round(loss_cls.item(), 4),
                "inbatch": round(loss_inb.item(), 4),
                "aux": round(loss_aux.item(), 5),
                "lr": round(lr, 6),
                "elapsed_s": round(time.time() - t0, 1),
            }
            bar.set_postfix(loss=rec["loss"], aux=rec["aux"])
            _log(log_path, rec)
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save_checkpoint(ckpt, stateful, generators, step + 1, time.time() - t0)
    train_s = time.time() - t0
    model.eval()
    metrics = evaluate(model, n_pairs=cfg.eval_pairs, augmentation=augmentation)
    model.threshold = metrics["threshold"]
    metrics.update(
        {"train_seconds": round(train_s, 1), "steps": cfg.steps, "seed": seed, "config": asdict(cfg)}
    )
    save_identity_model(model, out_path, extra={k: v for k, v in metrics.items() if k != "config"})
    _log(log_path, {"final": metrics})
    if ckpt.is_file():
        ckpt.unlink()
    return metrics
