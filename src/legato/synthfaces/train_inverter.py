"""Recipe for the SynthFaces inversion encoder: regress the exact render parameters and camera of random
renders (with generator-like augmentation), then measure parameter accuracy on held-out people and, when
the generator exists, whether G(invert(photo)) is still that person for the identity encoder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from legato.synthfaces.identity_encoder import BackboneConfig
from legato.synthfaces.inverter import ParamRegressor, save_inverter, split_outputs
from legato.synthfaces.params import (
    MAX_PITCH,
    MAX_YAW,
    N_IDENTITY,
    random_camera,
    random_identity,
    random_nuisance,
)
from legato.synthfaces.renderer import render
from legato.synthfaces.train_identity import augment
from legato.synthfaces.world import HELD_OUT_SEED, identity_from_seed, photo_generator, photos
from legato.training_state import load_checkpoint, save_checkpoint, warmup_cosine


@dataclass
class InverterTrainConfig:
    """Defaults of the shipped recipe (measured in docs/reference/synthfaces.md)."""

    batch: int = 128
    steps: int = 500
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    nuisance_weight: float = 0.5  # identity parameters matter most for inversion
    camera_weight: float = 0.5
    wide_fraction: float = 0.1  # share of samples with identity parameters in [-0.3, 1.3] (out-of-domain)
    augment_strength: float = 0.7
    checkpoint_every: int = 100
    eval_people: int = 100  # held-out people of the final parameter check
    init_from_identity: bool = True  # start from the identity encoder's backbone (it already sees identity)


def _batch(cfg: InverterTrainConfig, g: torch.Generator):
    n = cfg.batch
    ident = random_identity(n, g)
    wide = torch.rand(n, 1, generator=g) < cfg.wide_fraction
    ident = torch.where(wide, torch.rand(n, N_IDENTITY, generator=g) * 1.6 - 0.3, ident)
    nui, cam = random_nuisance(n, g), random_camera(n, g)
    x = augment(render(ident, nui, cam), g, strength=cfg.augment_strength)
    return x, torch.cat([ident, nui], 1), cam


def _loss(cfg: InverterTrainConfig, raw: torch.Tensor, params: torch.Tensor, cam: torch.Tensor) -> dict:
    p_hat, c_hat = split_outputs(raw)
    scale = torch.tensor([MAX_YAW, MAX_PITCH])
    l_id = F.mse_loss(p_hat[:, :N_IDENTITY], params[:, :N_IDENTITY])
    l_nui = F.mse_loss(p_hat[:, N_IDENTITY:], params[:, N_IDENTITY:])
    l_cam = F.mse_loss(c_hat / scale, cam / scale)
    return {
        "identity": l_id,
        "nuisance": l_nui,
        "camera": l_cam,
        "total": l_id + cfg.nuisance_weight * l_nui + cfg.camera_weight * l_cam,
    }


@torch.no_grad()
def evaluate_params(net: ParamRegressor, n_people: int = 100, first_seed: int = HELD_OUT_SEED) -> dict:
    """Mean absolute error of the identity parameters and camera on one photo each of held-out people."""
    net.eval()
    ident = torch.stack([identity_from_seed(first_seed + i) for i in range(n_people)])
    gens = [photo_generator(first_seed + i, 0) for i in range(n_people)]
    nui = torch.cat([random_nuisance(1, g) for g in gens])
    cam = torch.cat([random_camera(1, g) for g in gens])
    p_hat, c_hat = split_outputs(net(render(ident, nui, cam)))
    err = (p_hat[:, :N_IDENTITY] - ident).abs()
    return {
        "identity_param_mae": float(err.mean()),
        "identity_param_within_0.1": float((err < 0.1).float().mean()),
        "nuisance_param_mae": float((p_hat[:, N_IDENTITY:] - nui).abs().mean()),
        "yaw_mae_deg": float((c_hat[:, 0] - cam[:, 0]).abs().mean() * 180 / math.pi),
        "people": n_people,
    }


def evaluate_inversion(
    inverter,
    identity_model,
    n_people: int = 100,
    other_photos: int = 4,
    refine_steps: int = 0,
    batch: int = 25,
    id_weight: float = 0.5,
) -> dict:
    """G(invert(photo)) verified as the person of that photo, and of `other_photos` other photos of them.

    People are held-out seeds 1_000_000 + i; the reconstruction is drawn at the camera predicted from the
    photo. `refine_steps` > 0 runs `inverter.refine` (batched) before drawing.
    """
    x = torch.cat([photos(HELD_OUT_SEED + i, 1, seed=0) for i in range(n_people)])
    rest = torch.stack([photos(HELD_OUT_SEED + i, other_photos, seed=1) for i in range(n_people)])
    same, other = [], []
    for i in range(0, n_people, batch):
        xb, rb = x[i : i + batch], rest[i : i + batch]
        with torch.no_grad():
            ws = inverter(xb)
            cam = inverter.predict_camera(xb)
        if refine_steps > 0:
            ws = inverter.refine(
                xb, ws, steps=refine_steps, camera=cam, identity_model=identity_model, id_weight=id_weight
            )
        with torch.no_grad():
            recon = inverter.generator.synthesis(ws, cam)
            same.append(identity_model.verify(recon, xb).float())
            k = rb.shape[1]
            rec_k = recon[:, None].expand(-1, k, -1, -1, -1).reshape(-1, *recon.shape[1:])
            other.append(identity_model.verify(rec_k, rb.reshape(-1, *rb.shape[2:])).float())
    return {
        "verified_same_photo": float(torch.cat(same).mean()),
        "verified_other_photos": float(torch.cat(other).mean()),
        "people": n_people,
        "refine_steps": refine_steps,
        "refine_id_weight": id_weight if refine_steps > 0 else None,
    }


def _identity_source(out_path: Path, identity_path: str | Path | None) -> Path | None:
    from legato.synthfaces.identity_encoder import IDENTITY_WEIGHTS

    for cand in (identity_path, out_path.with_name("identity.safetensors"), IDENTITY_WEIGHTS):
        if cand is not None and Path(cand).is_file():
            return Path(cand)
    return None


def _init_from_identity(net: ParamRegressor, path: Path) -> str:
    """Copy the identity encoder's backbone weights into the regressor's backbone."""
    from legato.synthfaces.identity_encoder import load_identity_model

    net.backbone.load_state_dict(load_identity_model(path=path).backbone.state_dict())
    return str(path.name)


def train(
    out_path: str | Path,
    seed: int = 0,
    steps: int | None = None,
    log_path: str | Path | None = None,
    config: InverterTrainConfig | None = None,
    checkpoint_path: str | Path | None = None,
    identity_path: str | Path | None = None,
) -> dict:
    """Train the inversion encoder and write `out_path` (safetensors); returns the held-out metrics.

    Resumes from `checkpoint_path` (default: `<out_path>.ckpt` beside it, removed at the end) if present.
    The backbone starts from the identity encoder at `identity_path` (default: `identity.safetensors` beside
    `out_path`, else the shipped one), so train the identity encoder first.
    """

    from tqdm import tqdm


    cfg = config or InverterTrainConfig()
    if steps is not None:
        cfg.steps = int(steps)
    out_path = Path(out_path)
    start_from = _identity_source(out_path, identity_path)
    ckpt = Path(checkpoint_path) if checkpoint_path else out_path.with_name(out_path.name + ".ckpt")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    net = ParamRegressor(BackboneConfig())
    init_note = None
    if cfg.init_from_identity and start_from is not None:
        init_note = _init_from_identity(net, start_from)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stateful, generators = {"net": net, "opt": opt}, {"g": g}
    start, elapsed = load_checkpoint(ckpt, stateful, generators)
    net.train()
    t0 = time.time() - elapsed
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="inverter", mininterval=10)
    for step in bar:
        lr = warmup_cosine(cfg.lr, step, cfg.warmup, cfg.steps)
        for group in opt.param_groups:
            group["lr"] = lr
        x, params, cam = _batch(cfg, g)
        losses = _loss(cfg, net(x), params, cam)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        if (step % 20 == 0 or step == cfg.steps - 1) and log_path:
            rec = {k: round(v.item(), 5) for k, v in losses.items()}
            rec.update(step=step, lr=round(lr, 6), elapsed_s=round(time.time() - t0, 1))
            bar.set_postfix(identity=rec["identity"])
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save_checkpoint(ckpt, stateful, generators, step + 1, time.time() - t0)
    train_s = time.time() - t0
    metrics = evaluate_params(net, n_people=cfg.eval_people)
    metrics.update(
        {"train_seconds": round(train_s, 1), "steps": cfg.steps, "seed": seed, "backbone_init": init_note}
    )
    save_inverter(net, out_path, extra=metrics)
    metrics["config"] = asdict(cfg)
    if log_path:
        with open(log_path, "a") as f:
            f.write(json.dumps({"final": metrics}) + "\n")
    if ckpt.is_file():
        ckpt.unlink()
    return metrics
