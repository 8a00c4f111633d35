"""The strength a user turns, mapped so that forgetting falls evenly (`--dial-calibration`).

After training the result is rendered at `n_grid` values u of the dial's own scale (the ODE's time span, the
residual's output scale, LoRA's scale) and a monotone map from the user's strength s to u is stored with it
(`ode.StrengthMap`). Two ways to place the knots, both read with the **loss's** identity model, never the
judge:

- `loss-model`: the loss model's identity score (cosine to the source's render) follows
  `targets.identity_profile(s)`: 1 at 0, its threshold at `crossing`, the result's score at 1, linear between
  (the profile the path dial trains towards).
- `image`: the loss model only says where the person stops being recognised (the u where its score first
  falls below its threshold, placed at s = `crossing`); on either side of that point the image moves evenly:
  its RMS pixel distance from the source's render grows linearly in s. An identity network's score saturates
  and wavers once the face is far from the person, and another network saturates elsewhere; the image's
  own change does neither.

Either way strength 0 stays the source exactly and strength 1 the trained result, so the run's metrics at
full strength do not move.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from legato.ode.strength_map import StrengthMap
from legato.unlearning.targets import identity_profile

CALIBRATIONS = ("loss-model", "image")
CALIBRATION_PEOPLE = 8  # a set of many people: its curves are the means over this many of them


def _invert(curve: np.ndarray, grid: np.ndarray, want: np.ndarray, rising: bool) -> np.ndarray:
    """The u at which the monotone `curve` (over `grid`) takes each value of `want` (ties broken along u)."""
    ramp = np.arange(len(grid)) * 1e-6
    if rising:
        return np.interp(want, curve + ramp, grid)
    return np.interp(want, (curve - ramp)[::-1], grid[::-1])


@torch.no_grad()
def measure(source, unlearned, dial, ws_u: torch.Tensor, identity_model, n_grid: int = 21,
            n_views: int = 3) -> dict:
    """The result along its dial's own scale: `grid` (u), `score` (the loss model's mean cosine to the
    source's renders) and `distance` (RMS pixel distance to them), means over views and the first
    `CALIBRATION_PEOPLE` forgotten latents. Leaves the dial's map unset and its strength as it was."""
    pick = torch.linspace(0, ws_u.shape[0] - 1, min(ws_u.shape[0], CALIBRATION_PEOPLE)).round().long()
    ws = ws_u[pick.to(ws_u.device)]
    views = source.views(n_views).to(ws.device)
    cams = [views[v:v + 1].expand(ws.shape[0], -1) for v in range(n_views)]
    images = [source.synthesis(ws, c) for c in cams]
    reference = [F.normalize(identity_model.embed(img).float(), dim=1) for img in images]
    saved = dial.strength
    dial.strength_map = None
    grid = np.linspace(0.0, 1.0, n_grid)
    score, distance = [], []
    try:
        for u in grid:
            dial.strength = float(u)
            s = d = 0.0
            for v, c in enumerate(cams):
                img = unlearned.synthesis(ws, c)
                s += float((F.normalize(identity_model.embed(img).float(), dim=1) * reference[v]).sum(1).mean())
                d += float((img - images[v]).float().pow(2).flatten(1).mean(1).sqrt().mean())
            score.append(s / n_views)
            distance.append(d / n_views)
    finally:
        dial.strength = saved
    return {"grid": grid, "score": np.asarray(score), "distance": np.asarray(distance), "people": int(ws.shape[0]),
            "views": n_views}


def fit_map(measured: dict, how: str, threshold: float, crossing: float = 0.5, n_knots: int = 11) -> StrengthMap:
    """The strength map of one calibration design (`CALIBRATIONS`) from `measure`'s curves."""
    grid = measured["grid"]
    score = np.minimum.accumulate(measured["score"])
    s = np.linspace(0.0, 1.0, n_knots)
    if how == "loss-model":
        want = identity_profile(torch.tensor(s), float(threshold), float(score[-1]), crossing)
        u = _invert(score, grid, want.clamp(float(score[-1]), 1.0).numpy(), rising=False)
    elif how == "image":
        dist = np.maximum.accumulate(measured["distance"])
        below = np.nonzero(score < threshold)[0]
        if below.size == 0 or below[0] == 0:  # never forgotten (or from the start): the image alone
            want = s * dist[-1]
        else:  # the pixel distance where the score first falls below the threshold goes to s = crossing
            i = below[0]
            u_cross = grid[i - 1] + (grid[i] - grid[i - 1]) * (score[i - 1] - threshold) / (score[i - 1] - score[i])
            d_cross = float(np.interp(u_cross, grid, dist))
            want = np.where(s <= crossing, d_cross * s / crossing,
                            d_cross + (dist[-1] - d_cross) * (s - crossing) / (1 - crossing))
        u = _invert(dist, grid, want, rising=True)
    else:
        raise ValueError(f"unknown dial calibration {how!r}; choose one of {', '.join(CALIBRATIONS)}")
    u = np.maximum.accumulate(np.clip(u, 0.0, 1.0))
    u[0], u[-1] = 0.0, 1.0
    return StrengthMap(s.tolist(), u.tolist())


@torch.no_grad()
def calibrate_dial(source, unlearned, dial, ws_u: torch.Tensor, identity_model, threshold: float,
                   how: str = "loss-model", crossing: float = 0.5, n_grid: int = 21, n_views: int = 3) -> dict:
    """Measure the result in `unlearned` along its `dial`, fit the map of `how` and set `dial.strength_map`.
    Returns the map and the curves (for metrics.json)."""
    measured = measure(source, unlearned, dial, ws_u, identity_model, n_grid=n_grid, n_views=n_views)
    strength_map = fit_map(measured, how, threshold, crossing)
    dial.strength_map = strength_map
    return {"how": how, "strength_map": strength_map, "grid": measured["grid"].round(4).tolist(),
            "curve": [round(float(c), 4) for c in measured["score"]],
            "distance": [round(float(c), 5) for c in measured["distance"]],
            "crossing": crossing, "threshold": float(threshold), "people": measured["people"], "views": n_views}
