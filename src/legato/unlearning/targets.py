"""Unlearning targets (UFO) and the latents the losses are evaluated on."""

from __future__ import annotations

import torch


def typical_distance(generator, n: int = 512, seed: int = 1234) -> float:
    """Median ‖w − w_avg‖ over `n` random latents (first ws row), the scale of the generator's W space."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=g).to(generator.w_avg.device)
    with torch.no_grad():
        w = generator.mapping(z)[:, 0]
    return float((w - generator.w_avg).norm(dim=1).median())


def ufo_target(ws_u: torch.Tensor, w_avg: torch.Tensor, mode: str, distance: float) -> torch.Tensor:
    """The target latent for `ws_u` `[1, num_ws, w_dim]`.

    "average": w_avg. "extra": w_avg − d·(w_u − w_avg)/‖w_u − w_avg‖ (per ws row), the GUIDE/LEGATO
    extrapolation away from the person through the mean face.
    """
    avg = w_avg.expand_as(ws_u)
    if mode == "average":
        return avg.clone()
    diff = ws_u - avg
    norm = diff.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return avg - distance * diff / norm


def adjacent_offsets(ws_u: torch.Tensor, ws_r: torch.Tensor, alpha_max: float, generator: torch.Generator):
    """δ = α·(w_r − w_u)/‖w_r − w_u‖ with α ~ U(0, alpha_max), one per row of `ws_r` `[k, num_ws, w_dim]`."""
    diff = ws_r - ws_u
    unit = diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    alpha = torch.rand(ws_r.shape[0], 1, 1, generator=generator).to(ws_u.device) * alpha_max
    return alpha * unit
