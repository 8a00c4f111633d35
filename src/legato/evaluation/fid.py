"""Fréchet distances between feature sets (FID's formula, as torchmetrics' `FrechetInceptionDistance`
computes it; a test holds the two equal).

Features are extracted here (batch by batch, once per image set), so one set of source features serves both
`fid_pre` and `delta_fid_real` and a bootstrap interval costs no new network passes. The extractor is either
the Inception network of pytorch-fid / torch-fidelity (when its weights are given, see
`legato.evaluation.inception`) or the backend's identity model's penultimate `.features` (the default; the
JSON output names which).

The trace of the covariances' geometric mean, tr √(Σ₁Σ₂), is taken from the symmetric matrix √Σ₁ Σ₂ √Σ₁
(the same eigenvalues): two symmetric eigendecompositions instead of torchmetrics' general one (measured
side by side by `benchmarks/fid_speed.py`), since a run's two bootstrap intervals compute 150 distances.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from legato.errors import InputError

FID_BOOTSTRAP = 50  # bootstrap resamples behind each FID's 95% interval


class FeatureExtractor:
    """images `[B, 3, H, W]` in [-1, 1] → features `[B, D]` (float64 on the CPU), with a `name`."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str) -> None:
        self.fn = fn
        self.name = name

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.fn(images)
        if feats.dim() != 2:
            feats = feats.flatten(1)
        return feats.detach().to("cpu", torch.float64)


def resolve_features(fid_features, identity_model) -> FeatureExtractor:
    """Pick the FID feature extractor.

    `fid_features` may be None (the identity model's `.features`), a path to Inception weights (the
    pytorch-fid / torch-fidelity file), a `FeatureExtractor`, or any callable / module images → `[B, D]`.
    """
    if isinstance(fid_features, FeatureExtractor):
        return fid_features
    if isinstance(fid_features, str | Path):
        from legato.evaluation.inception import load_fid_inception

        net = load_fid_inception(fid_features)
        return FeatureExtractor(net, net.name)
    if fid_features is not None:
        if not callable(fid_features):
            raise InputError(f"fid_features must be a path, a module or a callable, got {type(fid_features)}")
        return FeatureExtractor(fid_features, str(getattr(fid_features, "name", type(fid_features).__name__)))
    if identity_model is None or not hasattr(identity_model, "features"):
        raise InputError(
            "no FID feature extractor: the identity model has no .features; give Inception weights "
            "(--inception PATH) or fid_features="
        )
    name = str(getattr(identity_model, "name", type(identity_model).__name__))
    return FeatureExtractor(identity_model.features, f"{name}.features")


def fid_from_moments(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂), in float64, never below 0."""
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    w, v = torch.linalg.eigh(sigma1)
    root = (v * w.clamp_min(0).sqrt()) @ v.T
    middle = root @ sigma2 @ root
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * cross
    # identical sets give a tiny negative number from rounding; the distance is ≥ 0
    return max(float(value), 0.0)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two feature sets `[N, D]` and `[M, D]` (N, M ≥ 2)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise InputError(f"FID needs at least 2 samples per set, got {a.shape[0]} and {b.shape[0]}")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"FID feature sets differ in width: {a.shape[1]} vs {b.shape[1]}")
    a, b = a.double(), b.double()
    return fid_from_moments(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def _interval(value: float, boots: list[float], floor: float | None = 0.0) -> list[float] | None:
    """value ± 1.96 · bootstrap standard deviation (the normal bootstrap interval).

    A percentile interval would sit far from the estimate: resampling with replacement repeats rows, which
    shrinks the effective sample size and so inflates FID's (large, positive) small-sample bias. The spread
    of the resampled values is still a fair estimate of the sampling noise, so it is centred on the estimate.
    """
    finite = np.asarray([v for v in boots if np.isfinite(v)])
    if finite.size < 2:
        return None
    half = 1.96 * float(finite.std(ddof=1))
    lo, hi = value - half, value + half
    if floor is not None:
        lo = max(lo, floor)
    return [float(lo), float(hi)]


def fid_pre(source: torch.Tensor, unlearned: torch.Tensor, seed: int = 0,
            n_boot: int = FID_BOOTSTRAP) -> tuple[float, list[float] | None]:
    """FID between paired sample sets (same z's) and a bootstrap 95% interval (pairs resampled)."""
    value = frechet_distance(source, unlearned)
    g = torch.Generator().manual_seed(seed)
    n = source.shape[0]
    boots = []
    for _ in range(n_boot):
        idx = torch.randint(0, n, (n,), generator=g)
        boots.append(frechet_distance(source[idx], unlearned[idx]))
    return value, _interval(value, boots)


def delta_fid_real(source: torch.Tensor, unlearned: torch.Tensor, real: torch.Tensor, seed: int = 0,
                   n_boot: int = FID_BOOTSTRAP) -> tuple[float, float, float, list[float] | None]:
    """FID(unlearned, real) − FID(source, real); returns (delta, fid_source, fid_unlearned, interval).

    The bootstrap resamples generated pairs and real images independently.
    """
    fs, fu = frechet_distance(real, source), frechet_distance(real, unlearned)
    g = torch.Generator().manual_seed(seed + 1)
    n, m = source.shape[0], real.shape[0]
    boots = []
    for _ in range(n_boot):
        idx = torch.randint(0, n, (n,), generator=g)
        jdx = torch.randint(0, m, (m,), generator=g)
        boots.append(frechet_distance(real[jdx], unlearned[idx]) - frechet_distance(real[jdx], source[idx]))
    return fu - fs, fs, fu, _interval(fu - fs, boots, floor=None)
