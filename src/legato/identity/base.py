"""The `IdentityModel` interface shared by every face-recognition network `legato` can use."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from legato.errors import InputError
from legato.identity import faces
from legato.identity.faces import Face

Photo = str | Path | Image.Image


class IdentityModel(ABC):
    """A face-recognition network: images in, unit-length identity embeddings out.

    - `embed(images)`: `[N, 3, H, W]` in [-1, 1], faces framed like FFHQ (a generator's output) →
      `[N, dim]` unit vectors. Differentiable when `differentiable` is true.
    - `embed_photos(photos)`: real photos (paths or PIL images): detects the face, aligns it to the
      crop this network was trained on and embeds it.
    - `threshold`: cosine similarity at or above which two embeddings are the same person.
    - `crop`: how `embed` finds the face in a generator's output: fixed (a fixed framing) | dlib (dlib's
      detector) | mtcnn (MTCNN's landmarks, `identity.cropped`).
    """

    name: str = "identity"
    threshold: float = 0.5
    differentiable: bool = False
    dim: int = 0
    crop: str = "fixed"

    @abstractmethod
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embed FFHQ-framed face images `[N, 3, H, W]` in [-1, 1] → unit vectors `[N, dim]`."""

    @abstractmethod
    def embed_faces(self, rgbs: Sequence[np.ndarray], found: Sequence[Face]) -> torch.Tensor:
        """Align and embed faces already found: RGB uint8 photos `[H, W, 3]` and one `Face` each."""

    def embed_photos(self, photos: Iterable[Photo], face: str = "single") -> torch.Tensor:
        """Detect, align and embed real photos → `[N, dim]` unit vectors.

        `face`: single (error when a photo holds several faces) | largest | center. A photo with no face
        raises an `InputError` naming it.
        """
        rgbs, found = [], []
        for rgb, name in faces.iter_photos(photos):
            rgbs.append(rgb)
            found.append(faces.find_face(rgb, name, face))
        return self.embed_faces(rgbs, found)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def similarity(
        self, a: torch.Tensor | Sequence[Photo], b: torch.Tensor | Sequence[Photo]
    ) -> torch.Tensor:
        """Cosine similarity of two batches of embeddings (or photos, embedded first), row by row."""
        ea, eb = self._as_embeddings(a), self._as_embeddings(b)
        if ea.dim() == 1:
            ea = ea[None]
        if eb.dim() == 1:
            eb = eb[None]
        return (F.normalize(ea, dim=-1) * F.normalize(eb, dim=-1)).sum(-1)

    def same_person(
        self, a: torch.Tensor | Sequence[Photo], b: torch.Tensor | Sequence[Photo]
    ) -> torch.Tensor:
        """Boolean tensor: is each pair's cosine similarity at or above `threshold`?"""
        return self.similarity(a, b) >= self.threshold

    def _as_embeddings(self, x: torch.Tensor | Sequence[Photo] | Photo) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x
        if isinstance(x, (str, Path, Image.Image)):
            x = [x]
        return self.embed_photos(list(x))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, threshold={self.threshold}, "
            f"differentiable={self.differentiable})"
        )


def check_images(images: torch.Tensor) -> None:
    """Raise a clear error unless `images` is a float `[N, 3, H, W]` batch."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"expected images of shape [N, 3, H, W] in [-1, 1], got {shape}")
    if not images.is_floating_point():
        raise InputError(f"expected float images in [-1, 1], got dtype {images.dtype}")
