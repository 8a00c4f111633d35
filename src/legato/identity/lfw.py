"""The LFW verification protocol (View 2, 10 folds of 300 matched + 300 mismatched pairs).

`read_pairs` parses `pairs.txt`; `evaluate` scores every fold with a fixed threshold (a model's own rule)
and with the threshold that is best on the other nine folds, as the "unrestricted" protocol allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from legato.errors import InputError


@dataclass(frozen=True)
class Pair:
    """Two LFW images (paths relative to the `images/` folder) and whether they show the same person."""

    a: str
    b: str
    same: bool


def image_name(person: str, number: int) -> str:
    return f"{person}/{person}_{number:04d}.jpg"


def read_pairs(path: str | Path) -> list[list[Pair]]:
    """The folds of `pairs.txt`: each a list of matched pairs followed by mismatched pairs."""
    path = Path(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise InputError(f"{path}: cannot read the LFW pairs file ({e})") from e
    try:
        n_folds, n_pairs = int(lines[0][0]), int(lines[0][1])
        folds, rows = [], iter(lines[1:])
        for _ in range(n_folds):
            fold = []
            for _ in range(n_pairs):
                p = next(rows)
                fold.append(Pair(image_name(p[0], int(p[1])), image_name(p[0], int(p[2])), True))
            for _ in range(n_pairs):
                p = next(rows)
                fold.append(Pair(image_name(p[0], int(p[1])), image_name(p[2], int(p[3])), False))
            folds.append(fold)
    except (IndexError, ValueError, StopIteration) as e:
        raise InputError(f"{path}: not an LFW pairs.txt (first line: folds and pairs per fold)") from e
    return folds


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float, higher_is_same: bool = True) -> float:
    """Share of pairs classified right: same person when score ≥ threshold (≤ when not higher_is_same)."""
    pred = scores >= threshold if higher_is_same else scores <= threshold
    return float((pred == same).mean())


def best_threshold(scores: np.ndarray, same: np.ndarray, higher_is_same: bool = True) -> float:
    """The threshold (a midpoint between neighbouring scores) with the highest accuracy on these pairs."""
    s = np.unique(scores)
    candidates = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    accs = [accuracy(scores, same, t, higher_is_same) for t in candidates]
    return float(candidates[int(np.argmax(accs))])


@dataclass
class FoldResults:
    """Per-fold accuracies of one scoring rule; `thresholds` are the ones used on each fold."""

    accuracies: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Standard deviation over folds (ddof=1; 0 for a single fold)."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "folds": self.accuracies, "thresholds": self.thresholds}


def evaluate(
    scores: list[np.ndarray],
    same: list[np.ndarray],
    fixed_threshold: float | None,
    higher_is_same: bool = True,
) -> dict[str, FoldResults]:
    """Score each fold at `fixed_threshold` and at the best threshold of the other folds.

    `scores[k]`, `same[k]`: the scores and labels of fold k. With a single fold the "cross" threshold
    is chosen on that fold itself (optimistic; the key says so).
    """
    out: dict[str, FoldResults] = {}
    if fixed_threshold is not None:
        fixed = FoldResults()
        for s, y in zip(scores, same, strict=True):
            fixed.accuracies.append(accuracy(s, y, fixed_threshold, higher_is_same))
            fixed.thresholds.append(fixed_threshold)
        out["fixed"] = fixed
    key = "cross" if len(scores) > 1 else "self"
    cross = FoldResults()
    for k in range(len(scores)):
        rest = [i for i in range(len(scores)) if i != k] or [k]
        t = best_threshold(
            np.concatenate([scores[i] for i in rest]), np.concatenate([same[i] for i in rest]), higher_is_same
        )
        cross.accuracies.append(accuracy(scores[k], same[k], t, higher_is_same))
        cross.thresholds.append(t)
    out[key] = cross
    return out
