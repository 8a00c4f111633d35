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


def ufo_target(ws_u: torch.Tensor, w_avg: torch.Tensor, mode: str, distance: float, generator=None) -> torch.Tensor:
    """The target latent for each row of `ws_u` `[N, num_ws, w_dim]`.

    "average": w_avg. "extra": w_avg − d·(w_u − w_avg)/‖w_u − w_avg‖ (whole-tensor norm), the GUIDE/LEGATO
    extrapolation away from the person through the mean face. "extra-projected": that point projected onto
    the latents the mapping network produces (`project_to_mapping`; needs `generator`), so the target is a
    person the generator draws rather than a blend.
    """
    avg = w_avg.expand_as(ws_u)
    if mode == "average":
        return avg.clone()
    if mode == "extra-projected":
        if generator is None:
            raise ValueError("the extra-projected target needs the generator")
        with torch.enable_grad():  # one projection per person
            return torch.cat([project_to_mapping(generator, ufo_target(ws_u[i:i + 1], w_avg, "extra", distance))
                              for i in range(ws_u.shape[0])])
    diff = ws_u - avg
    return avg - distance * diff / ws_norm(diff).clamp_min(1e-8)


def project_to_mapping(generator, ws_target: torch.Tensor, steps: int = 300, lr: float = 0.05, restarts: int = 8,
                       seed: int = 0, max_abs_z: float = 3.0) -> torch.Tensor:
    """The latent of the mapping network closest to `ws_target` `[1, num_ws, w_dim]`: mapping(z*) with
    z* = argmin ‖mapping(z) − ws_target‖ (whole-tensor norm; Adam from `restarts` random starts, |z| kept
    within `max_abs_z`). A UFO target is a point of W+ that no sample of the generator need be near (the
    mean face pushed outwards); its projection is the nearest person the generator actually draws."""
    g = torch.Generator().manual_seed(seed)
    device = ws_target.device
    z = torch.randn(restarts, generator.z_dim, generator=g).to(device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    target = ws_target.detach().expand(restarts, -1, -1)
    for _ in range(int(steps)):
        dist = ws_norm(generator.mapping(z) - target).flatten()
        opt.zero_grad(set_to_none=True)
        dist.sum().backward()
        opt.step()
        with torch.no_grad():
            z.clamp_(-max_abs_z, max_abs_z)
    with torch.no_grad():
        ws = generator.mapping(z)
        best = ws_norm(ws - target).flatten().argmin()
        return ws[best:best + 1].detach()


def adjacent_directions(ws_u: torch.Tensor, ws_r: torch.Tensor) -> torch.Tensor:
    """(w_r − w_u)/‖w_r − w_u‖ (whole-tensor norm), one unit direction per latent of `ws_r` `[k, num_ws, w_dim]`;
    the adjacency offsets are δ = α·direction with α ~ U(0, alpha_max) (`trainer.draw_iteration`)."""
    diff = ws_r - ws_u
    return diff / ws_norm(diff).clamp_min(1e-8)

