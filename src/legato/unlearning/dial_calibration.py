"""The strength a user turns, mapped so that forgetting falls evenly (`--dial-calibration loss-model`).

After training, the **loss's** identity model (never the judge) scores the result's renders of the forgotten
latents at `n_grid` values u of the dial's own scale (the ODE's time span, the residual's output scale,
LoRA's scale) against the source's renders: a curve from 1 at u = 0 down to the result's score at u = 1.
The stored map sends the user's strength s to the u where that curve meets `targets.identity_profile(s)`
(1 at 0, the loss model's threshold at `crossing`, the result's own score at 1, linear in between), the
profile the path dial trains towards. Strength 0 stays the source exactly and strength 1 the trained result,
so the run's metrics at full strength do not move.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from legato.ode.strength_map import StrengthMap
from legato.unlearning.targets import identity_profile

CALIBRATION_PEOPLE = 8  # a set of many people: its curve is the mean over this many of them


@torch.no_grad()
def _scores(generator, ws: torch.Tensor, views: torch.Tensor, identity_model, reference: list[torch.Tensor]):
    total = torch.zeros((), device=ws.device)
    for v in range(views.shape[0]):
        emb = F.normalize(identity_model.embed(generator.synthesis(ws, views[v:v + 1].expand(ws.shape[0], -1)))
                          .float(), dim=1)
        total += (emb * reference[v]).sum(1).mean()
    return float(total) / views.shape[0]


@torch.no_grad()
def calibrate_dial(source, unlearned, dial, ws_u: torch.Tensor, identity_model, threshold: float,
                   crossing: float = 0.5, n_grid: int = 21, n_knots: int = 11, n_views: int = 3) -> dict:
    """Fit and set `dial.strength_map` for the result in `unlearned` (whose dial is `dial`).

    `ws_u` `[N, num_ws, w_dim]`: the forgotten latents (the first `CALIBRATION_PEOPLE`, evenly spread, are
    used). Returns the map and the raw curve (`grid`, `curve`: the loss model's mean cosine at each u, made
    non-increasing) for metrics.json.
    """
    pick = torch.linspace(0, ws_u.shape[0] - 1, min(ws_u.shape[0], CALIBRATION_PEOPLE)).round().long()
    ws = ws_u[pick.to(ws_u.device)]
    views = source.views(n_views).to(ws.device)
    reference = [F.normalize(identity_model.embed(source.synthesis(ws, views[v:v + 1].expand(ws.shape[0], -1)))
                             .float(), dim=1) for v in range(n_views)]
    saved = dial.strength
    dial.strength_map = None
    grid = np.linspace(0.0, 1.0, n_grid)
    raw = []
    try:
        for u in grid:
            dial.strength = float(u)
            raw.append(_scores(unlearned, ws, views, identity_model, reference))
    finally:
        dial.strength = saved
    curve = np.minimum.accumulate(np.asarray(raw))
    s = torch.linspace(0, 1, n_knots)
    want = identity_profile(s, float(threshold), float(curve[-1]), crossing).clamp(float(curve[-1]), 1.0).numpy()
    # invert the non-increasing curve (np.interp wants increasing x; ties broken by the order along u)
    descending = curve - np.arange(n_grid) * 1e-6
    u = np.interp(want, descending[::-1], grid[::-1])
    u = np.maximum.accumulate(np.clip(u, 0.0, 1.0))
    u[0], u[-1] = 0.0, 1.0
    strength_map = StrengthMap(s.tolist(), u.tolist())
    dial.strength_map = strength_map
    return {"strength_map": strength_map, "grid": grid.round(4).tolist(), "curve": [round(float(c), 4) for c in curve],
            "crossing": crossing, "threshold": float(threshold), "people": int(ws.shape[0]), "views": n_views}
