"""Metrics of the digits flow: classifier accuracy on samples, FID and MMD in the classifier's feature
space, and a membership-style leakage gap (flow-matching loss on training vs held-out images of a class)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from torch import nn

from legato.flows.train import flow_matching_loss


@torch.no_grad()
def accuracy_by_class(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """Fraction of `images` the classifier assigns to their intended label, per label."""
    pred = classifier.predict(images)
    return {int(c): float((pred[labels == c] == c).float().mean()) for c in torch.unique(labels).tolist()}


@torch.no_grad()
def features(classifier: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    classifier.eval()
    return (
        torch.cat(
            [classifier.features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )
        .double()
        .numpy()
    )


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets `[N, D]` (FID's formula)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eps = 1e-6 * np.eye(len(s1))  # keeps sqrtm defined when a covariance is singular (few samples)
    covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def mmd2(a: np.ndarray, b: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD, Gaussian kernel; bandwidth: median pairwise distance within `b` unless given."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)

    def sqd(x, y):
        return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2 * x @ y.T, 0.0)

    dbb = sqd(b, b)
    if bandwidth is None:
        bandwidth = float(np.sqrt(np.median(dbb[np.triu_indices(len(b), 1)])))
    gamma = 1.0 / (2 * bandwidth**2)
    kaa, kbb, kab = np.exp(-gamma * sqd(a, a)), np.exp(-gamma * dbb), np.exp(-gamma * sqd(a, b))
    n, m = len(a), len(b)
    return float(
        (kaa.sum() - np.trace(kaa)) / (n * (n - 1))
        + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
        - 2 * kab.mean()
    )


@torch.no_grad()
def per_sample_fm_loss(
    model: nn.Module, images: torch.Tensor, label: int, draws: int = 16, seed: int = 0
) -> torch.Tensor:
    """Flow-matching loss of each image averaged over `draws` (noise, t) pairs, `[N]`; same draws per seed."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.full((len(images),), label, dtype=torch.long)
    total = torch.zeros(len(images))
    for _ in range(draws):
        total += flow_matching_loss(model, images, y, generator=gen, reduce=False)
    return total / draws


def auc_lower_is_member(member: torch.Tensor, non_member: torch.Tensor) -> float:
    """P(loss of a random member < loss of a random non-member) (ties count half): 0.5 means no leakage."""
    m, n = member[:, None], non_member[None, :]
    return float(((m < n).float() + 0.5 * (m == n).float()).mean())


def leakage(
    model: nn.Module,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    label: int,
    seed: int = 0,
    draws: int = 16,
) -> dict:
    """Membership-style leakage on one class: held-out minus training flow-matching loss, and its AUC."""
    lt = per_sample_fm_loss(model, train_images, label, draws, seed)
    lh = per_sample_fm_loss(model, test_images, label, draws, seed + 1)
    return {
        "train_loss": float(lt.mean()),
        "held_out_loss": float(lh.mean()),
        "gap": float(lh.mean() - lt.mean()),
        "auc": auc_lower_is_member(lt, lh),
        "n_train": len(lt),
        "n_held_out": len(lh),
    }


def is_monotone(values: list[float], increasing: bool = False, tol: float = 0.0) -> bool:
    """Whether `values` never rise (or, with `increasing`, never fall) by more than `tol`."""
    steps = np.diff(np.asarray(values, dtype=np.float64))
    return bool((steps >= -tol).all()) if increasing else bool((steps <= tol).all())


def flow_quality(
    model: nn.Module, classifier: nn.Module, per_class: int = 100, seed: int = 0, sampler=None
) -> dict:
    """Per-class classifier accuracy on `per_class` samples of each class, plus the classifier's own
    accuracy on the held-out real digits."""
    from legato.flows.data import load_split
    from legato.flows.sampling import class_labels, sample

    labels = class_labels(per_class)
    images = sample(model, labels, seed=seed, config=sampler)
    acc = accuracy_by_class(classifier, images, labels)
    data = load_split()
    held = classifier.predict(data.test_images)
    return {
        "per_class": acc,
        "min_class": min(acc.values()),
        "mean": sum(acc.values()) / len(acc),
        "per_class_samples": per_class,
        "classifier_held_out_accuracy": float((held == data.test_labels).float().mean()),
        "held_out_size": len(data.test_labels),
        "images": images,
        "labels": labels,
    }
