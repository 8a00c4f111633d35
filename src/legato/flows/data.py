"""scikit-learn's bundled 8×8 handwritten digits as 16×16 images in [-1, 1], with a fixed held-out split.

`sklearn.datasets.load_digits` ships with scikit-learn (1,797 images, 10 classes, pixel values 0..16), so
nothing is downloaded. Images are scaled to [-1, 1] and upsampled bilinearly to 16×16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from legato.errors import InputError

NUM_CLASSES = 10
IMAGE_SIZE = 16
HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 0  # the split is part of the shipped weights' recipe: keep it fixed


@dataclass
class DigitsSplit:
    """Images `[N, 1, 16, 16]` float in [-1, 1] and integer labels `[N]`, for training and held out."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def of_class(self, label: int, split: str = "train") -> torch.Tensor:
        images, labels = (
            (self.train_images, self.train_labels)
            if split == "train"
            else (self.test_images, self.test_labels)
        )
        return images[labels == label]


def _require_sklearn():
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError(
            "the digits flow needs scikit-learn for its data; install it with "
            "`pip install 'legato-unlearn[flows]'`"
        ) from e
    return load_digits


def to_images(pixels: np.ndarray, size: int = IMAGE_SIZE) -> torch.Tensor:
    """8×8 digit pixels (0..16), shape `[N, 64]` or `[N, 8, 8]`, → `[N, 1, size, size]` in [-1, 1]."""
    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32)).reshape(-1, 1, 8, 8)
    x = x / 8.0 - 1.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(-1.0, 1.0)


def load_split(size: int = IMAGE_SIZE) -> DigitsSplit:
    """The digits with a stratified 80/20 split (seed 0), the same on every machine."""
    load_digits = _require_sklearn()
    bunch = load_digits()
    labels = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    test_idx = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        test_idx.extend(idx[: int(round(len(idx) * HELD_OUT_FRACTION))].tolist())
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx] = True
    images = to_images(bunch.data, size)
    y = torch.as_tensor(labels)
    mask = torch.as_tensor(is_test)
    return DigitsSplit(images[~mask], y[~mask], images[mask], y[mask])


def check_class(label: int) -> int:
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < NUM_CLASSES:
        raise InputError(f"the digits have classes 0..{NUM_CLASSES - 1}; got {label!r}")
    return int(label)
