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



# The strengths at which `dial="path"` trains intermediate states (the solver's grid points of the reference
# setting, 4 Euler steps of 0.4 over [0, 1.6]); strength 1 is the main local term.
DIAL_STRENGTHS = (0.25, 0.5, 0.75)


def identity_profile(s: torch.Tensor, threshold: float, end: float, crossing: float) -> torch.Tensor:
    """The identity score the dial should give at strengths `s`: 1 at 0, the threshold at `crossing`, `end`
    (the target's score) at 1, linear in between. Without a crossing (the target itself still recognised)
    a straight line from 1 to `end`."""
    if end >= threshold:
        return 1 - (1 - end) * s
    first = 1 - (1 - threshold) * s / crossing
    second = threshold - (threshold - end) * (s - crossing) / (1 - crossing)
    return torch.where(s <= crossing, first, second)


@torch.no_grad()
def dial_path(source, identity_model, ws_u: torch.Tensor, ws_t: torch.Tensor, threshold: float,
              crossing: float = 0.5, strengths=DIAL_STRENGTHS, n_grid: int = 21, n_views: int = 3) -> dict:
    """Where on the straight path from each forgotten latent to its target the dial should be at each of
    `strengths`, so that the identity score (of `identity_model`: the loss's model, never the judge) falls
    evenly and crosses `threshold` at `crossing` (`identity_profile`).

    The source renders `lerp(w_u, w_t, a)` for `n_grid` fractions a at `n_views` views; the score is the
    mean cosine to the render at a = 0, made non-increasing along a. Returns `fractions` `[N, len(strengths)]`
    (the a for each strength), `curve` `[N, n_grid]` and `grid`.
    """
    import torch.nn.functional as F

    grid = torch.linspace(0, 1, n_grid, device=ws_u.device)
    views = source.views(n_views).to(ws_u.device)
    s = torch.tensor(strengths, dtype=torch.float32)
    fractions, curves = [], []
    for i in range(ws_u.shape[0]):
        ws = torch.lerp(ws_u[i:i + 1].expand(n_grid, -1, -1), ws_t[i:i + 1].expand(n_grid, -1, -1),
                        grid.view(-1, 1, 1))
        cos = torch.zeros(n_grid, device=ws_u.device)
        for v in range(n_views):
            emb = F.normalize(identity_model.embed(source.synthesis(ws, views[v:v + 1].expand(n_grid, -1))).float(),
                              dim=1)
            cos += (emb * emb[:1]).sum(1) / n_views
        curve = torch.cummin(cos.cpu(), 0).values
        want = identity_profile(s, threshold, float(curve[-1]), crossing).clamp(float(curve[-1]), 1.0)
        # invert the non-increasing curve (ties broken by the order along the path)
        c = (curve - torch.arange(n_grid) * 1e-6).numpy()[::-1].copy()
        g = grid.cpu().numpy()[::-1].copy()
        import numpy as np

        fractions.append(torch.tensor(np.interp(want.numpy(), c, g), dtype=torch.float32))
        curves.append(curve)
    return {"fractions": torch.stack(fractions), "curve": torch.stack(curves), "grid": grid.cpu(),
            "strengths": list(strengths), "crossing": crossing}
