"""The strength dial made visible: identity scores at adapter strengths 0 … 1, and a fade strip.

At strength 0 every adapter hook returns its input untouched, so the unlearned generator must reproduce
the source exactly (`strength0_max_abs_diff`); for a trained adapter `id_target` should fall monotonically
with strength (`spearman` = −1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from legato.errors import InputError
from legato.evaluation import images as im
from legato.evaluation import plots
from legato.evaluation.metrics import (
    NO_IDENTITY_NOTE,
    _check_ws,
    _embed,
    _model_name,
    _optional_identity_model,
    _pairs,
    random_ws,
)

DEFAULT_STRENGTHS = tuple(round(i / 10, 1) for i in range(11))


def _check_strengths(strengths: Sequence[float]) -> list[float]:
    values = [float(s) for s in strengths]
    if not values:
        raise InputError("the sweep needs at least one strength")
    bad = [s for s in values if not 0.0 <= s <= 1.0]
    if bad:
        raise InputError(f"strengths must lie in [0, 1], got {bad}")
    return values


def _average_ranks(values: list[float]) -> np.ndarray:
    """Ranks 1…n, ties sharing the mean of their ranks."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    i = 0
    while i < x.size:
        j = i
        while j + 1 < x.size and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's ρ (Pearson correlation of average ranks); None when either side is constant or n < 3."""
    if len(x) != len(y):
        raise InputError(f"spearman needs paired values, got {len(x)} and {len(y)}")
    if len(x) < 3:
        return None
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return None if denom == 0 else float((rx * ry).sum() / denom)


DIAL_MAX_STEP = 0.25  # no step between neighbouring strengths may carry more than this share of the fall
DIAL_CROSSING = (0.3, 0.7)  # where the forgotten latent should stop being recognised


def dial_quality(strengths: Sequence[float], ids: Sequence[float], threshold: float | None,
                 preservation: Sequence[float | None] | None = None, goal: float = 0.95) -> dict:
    """How well a sweep behaves as a dial (docs/howto/the-dial.md, "The dial"):
    - `spearman`: ρ of id_target against strength (−1: always falls);
    - `largest_step_fraction`: the largest fall between neighbouring strengths over the whole fall
      (id_target at the first strength minus its lowest value);
    - `crossing_strength`: where id_target first goes below `threshold` (linear between the two strengths
      around it; None if it never does);
    - `preservation_min`: the lowest id_preservation along the sweep;
    - `dial_ok`: ρ = −1, largest step ≤ `DIAL_MAX_STEP`, crossing within `DIAL_CROSSING`, preservation ≥ goal.
    """
    order = np.argsort(np.asarray(strengths, dtype=float), kind="stable")
    s = [float(strengths[i]) for i in order]
    y = [float(ids[i]) for i in order]
    rho = spearman(s, y)
    fall = y[0] - min(y)
    steps = [a - b for a, b in zip(y, y[1:], strict=False)]
    largest = None if fall <= 0 or not steps else max(steps) / fall
    crossing = None
    if threshold is not None:
        for k in range(len(y)):
            if y[k] < threshold:
                # linear interpolation between the last point above and the first below the threshold
                crossing = s[0] if k == 0 else s[k - 1] + (s[k] - s[k - 1]) * (y[k - 1] - threshold) / (y[k - 1] - y[k])
                break
    pres = [p for p in (preservation or []) if p is not None]
    pres_min = min(pres) if pres else None
    ok = (rho is not None and rho <= -1 + 1e-9 and largest is not None and largest <= DIAL_MAX_STEP
          and crossing is not None and DIAL_CROSSING[0] <= crossing <= DIAL_CROSSING[1]
          and (pres_min is None or pres_min >= goal))
    return {"spearman": rho, "largest_step_fraction": largest, "crossing_strength": crossing,
            "preservation_min": pres_min, "dial_ok": bool(ok)}


def _strength_zero_is_exact(dial) -> bool:
    """Whether the dial leaves the model untouched at strength 0 (an adapter set skips itself there)."""
    from legato.ode.adapter_set import AdapterSet

    return isinstance(dial, AdapterSet)


def _source_embeddings(source, identity_model, w, c, batch_size):
    from legato.evaluation.metrics import source_cached
    from legato.tensor_cache import tensor_digest

    return source_cached("embeddings", source, identity_model, lambda: _embed(source, identity_model, w, c, batch_size),
                         inputs=tensor_digest(w, c), batch_size=batch_size)


@torch.no_grad()
def run_sweep(source, unlearned, adapter_set, target_ws: torch.Tensor, held_out_ws: torch.Tensor | None = None,
              strengths: Sequence[float] = DEFAULT_STRENGTHS, *, identity_model=None, n_random: int = 32,
              n_views: int = 5, seed: int = 0, batch_size: int = 64, progress: bool = False) -> dict:
    """`id_target`, `id_others`, `id_preservation` of `unlearned` at each strength of `adapter_set`.

    `unlearned` must be the model `adapter_set` is attached to. Source embeddings are computed once; the
    adapter set's strength is restored afterwards. Returns `points` (one dict per strength), `spearman`
    (Spearman ρ of id_target against strength; None when undefined), `monotone` (id_target never rises),
    and `strength0_max_abs_diff` (max |unlearned − source| pixel difference at strength 0, when swept).
    Without an identity model (none given, none of the backend's) the scores are None, as are `spearman`
    and `monotone`, and `identity_note` says so.
    """
    values = _check_strengths(strengths)
    identity_model = _optional_identity_model(source, identity_model)
    target_ws = _check_ws(target_ws, source, "target_ws")
    groups = {"id_target": target_ws}
    if held_out_ws is not None:
        groups["id_others"] = _check_ws(held_out_ws, source, "held_out_ws")
    if n_random:
        groups["id_preservation"] = random_ws(source, n_random, seed + 1)
    views = source.views(n_views).to(target_ws.device)
    pairs = {k: _pairs(ws, views) for k, ws in groups.items()}
    src = {} if identity_model is None else {
        k: _source_embeddings(source, identity_model, w, c, batch_size) for k, (w, c) in pairs.items()}

    saved = (adapter_set.strength, adapter_set.enabled)
    points, diff0 = [], None
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("strength sweep", total=len(values))
    try:
        adapter_set.enabled = True
        for s in values:
            adapter_set.strength = s
            point = {"strength": s}
            exact = False
            if s == 0.0:
                front = views[:1].expand(target_ws.shape[0], -1)
                diff0 = float((unlearned.synthesis(target_ws, front) - source.synthesis(target_ws, front))
                              .abs().max())
                # a dial whose strength 0 is the source bit for bit renders what the source rendered
                exact = diff0 == 0.0 and _strength_zero_is_exact(adapter_set)
            for key, (w, c) in pairs.items():
                if identity_model is None:
                    point[key] = None
                    continue
                e_u = src[key] if exact else _embed(unlearned, identity_model, w, c, batch_size)
                point[key] = float((src[key] * e_u).sum(1).clamp(-1, 1).mean())
            points.append(point)
            if bar is not None:
                bar.advance(task)
    finally:
        adapter_set.strength, adapter_set.enabled = saved
        if bar is not None:
            bar.stop()
    ids = [p["id_target"] for p in points]
    order = np.argsort(values, kind="stable")
    ids_sorted = [ids[i] for i in order]
    scored = identity_model is not None
    result = {
        "strengths": values,
        "points": points,
        "spearman": spearman(values, ids) if scored else None,
        "monotone": bool(all(b <= a for a, b in zip(ids_sorted, ids_sorted[1:], strict=False))) if scored else None,
        "strength0_max_abs_diff": diff0,
        "identity_model": _model_name(identity_model) if scored else None,
        "threshold": getattr(identity_model, "threshold", None),
        "views": n_views,
        "n_random": n_random,
        "held_out": 0 if held_out_ws is None else int(held_out_ws.shape[0]),
        "seed": seed,
    }
    if not scored:
        result["identity_note"] = NO_IDENTITY_NOTE
    else:
        quality = dial_quality(values, ids, result["threshold"], [p.get("id_preservation") for p in points])
        result.update({k: v for k, v in quality.items() if k != "spearman"})
    return result


def save_sweep_plot(result: dict, path: str | Path) -> Path:
    """The sweep as a PNG line plot (identity scores against strength)."""
    return plots.plot_sweep(result, path)


@torch.no_grad()
def save_fade_strip(unlearned, adapter_set, target_ws: torch.Tensor, strengths: Sequence[float],
                    path: str | Path) -> Path:
    """The forgotten face (first latent, front view) at each strength, left to right, labelled."""
    values = _check_strengths(strengths)
    ws = _check_ws(target_ws, unlearned, "target_ws")[:1]
    frames = frames_at_strengths(unlearned, adapter_set, ws, values)
    return im.save_labelled_strip(torch.cat(frames), [f"s={s:g}" for s in values], path)


@torch.no_grad()
def frames_at_strengths(unlearned, adapter_set, ws: torch.Tensor, strengths: Sequence[float]) -> list[torch.Tensor]:
    """Front-view images of `ws` at each strength of `adapter_set` (its strength and switch restored after)."""
    front = unlearned.views(1).to(ws.device).expand(ws.shape[0], -1)
    saved = (adapter_set.strength, adapter_set.enabled)
    frames = []
    try:
        adapter_set.enabled = True
        for s in strengths:
            adapter_set.strength = s
            frames.append(unlearned.synthesis(ws, front))
    finally:
        adapter_set.strength, adapter_set.enabled = saved
    return frames
