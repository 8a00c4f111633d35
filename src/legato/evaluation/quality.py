"""Is the forgotten face still a plausible face? Its sharpness against the range of ordinary samples.

Forgetting should turn the person into *someone else*, not into a blur: an objective that pulls the face
towards an over-smooth target leaves identity scores that pass while the picture fails. The score here is
the variance of the Laplacian of the grey image (a standard focus measure): a blurred face scores far below
ordinary samples, a noisy one far above. The unlearned renders of the forgotten latent (mean over the
evaluation views) count as plausible when they fall inside the central 95% of the same score over
ordinary samples of the source generator (random latents, the same views).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
ORDINARY_RANGE = (2.5, 97.5)  # percentiles of ordinary samples' sharpness that count as plausible


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """Variance of the 3×3 Laplacian of the grey image, `[B]`, for images `[B, 3, H, W]` in [-1, 1]."""
    grey = images.float().mean(1, keepdim=True)
    lap = F.conv2d(grey, _LAPLACIAN.to(grey.device)[None, None])
    return lap.flatten(1).var(1)


@torch.no_grad()
def target_quality(source, unlearned, target_ws: torch.Tensor, *, n_views: int = 11, n_ordinary: int = 200,
                   seed: int = 0, batch_size: int = 50) -> dict:
    """Sharpness of the unlearned forgotten face vs ordinary source samples (the module docstring)."""
    from legato.evaluation.metrics import random_ws

    views = source.views(n_views).to(target_ws.device)
    ws = target_ws[:1].expand(n_views, -1, -1)
    target = float(sharpness(unlearned.synthesis(ws, views)).mean())
    target_source = float(sharpness(source.synthesis(ws, views)).mean())
    ordinary = []
    others = random_ws(source, n_ordinary, seed + 3)
    for i in range(0, n_ordinary, batch_size):
        w = others[i:i + batch_size]
        cams = views[torch.arange(i, i + w.shape[0]) % n_views]
        ordinary.append(sharpness(source.synthesis(w, cams)))
    values = torch.cat(ordinary).cpu().numpy()
    lo, hi = (float(np.percentile(values, p)) for p in ORDINARY_RANGE)
    return {"target_sharpness": target, "target_sharpness_source": target_source,
            "target_sharpness_percentile": float((values < target).mean() * 100),
            "ordinary_sharpness_range": [lo, hi], "ordinary_sharpness_n": int(values.size),
            "target_plausible": bool(lo <= target <= hi)}
