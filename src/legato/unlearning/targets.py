"""Unlearning targets (UFO) and the latents the losses are evaluated on.

One geometry, the reference code's: a distance in W+ is the norm of the **whole** ws tensor
`[num_ws, w_dim]` (LEGATO's and GUIDE's `unlearn.py` normalise `w − w_avg` with one `norm(p=2)` over all
rows). For a latent straight from the mapping network every row is the same, so this equals √num_ws times
the per-row norm, and a relative distance ("1x", measured by `typical_distance` the same way) gives the
same target either way; an absolute one (EG3D's d = 30) now means what it means in the reference.
"""

from __future__ import annotations

import torch


def ws_norm(x: torch.Tensor) -> torch.Tensor:
    """The norm of each latent's whole ws tensor: `[B, num_ws, w_dim]` → `[B, 1, 1]`."""
    return x.flatten(1).norm(dim=1).view(-1, 1, 1)


def typical_distance(generator, n: int = 512, seed: int = 1234) -> float:
    """Median ‖ws − w_avg‖ (whole tensor) over `n` random latents, the scale of the generator's W+ space."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=g).to(generator.w_avg.device)
    with torch.no_grad():
        ws = generator.mapping(z)
    return float(ws_norm(ws - generator.w_avg).median())


def ufo_target(ws_u: torch.Tensor, w_avg: torch.Tensor, mode: str, distance: float) -> torch.Tensor:
    """The target latent for `ws_u` `[1, num_ws, w_dim]`.

    "average": w_avg. "extra": w_avg − d·(w_u − w_avg)/‖w_u − w_avg‖ (whole-tensor norm), the GUIDE/LEGATO
    extrapolation away from the person through the mean face.
    """
    avg = w_avg.expand_as(ws_u)
    if mode == "average":
        return avg.clone()
    diff = ws_u - avg
    return avg - distance * diff / ws_norm(diff).clamp_min(1e-8)


def adjacent_offsets(ws_u: torch.Tensor, ws_r: torch.Tensor, alpha_max: float, generator: torch.Generator):
    """δ = α·(w_r − w_u)/‖w_r − w_u‖ (whole-tensor norm) with α ~ U(0, alpha_max), one per latent of `ws_r`
    `[k, num_ws, w_dim]`."""
    diff = ws_r - ws_u
    unit = diff / ws_norm(diff).clamp_min(1e-8)
    alpha = torch.rand(ws_r.shape[0], 1, 1, generator=generator).to(ws_u.device) * alpha_max
    return alpha * unit
