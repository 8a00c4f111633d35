"""Adapting any embedding network (such as the SynthFaces identity encoder) to `IdentityModel`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from legato.errors import InputError
from legato.identity import faces
from legato.identity.base import IdentityModel, Photo, check_images


class WrappedIdentityModel(IdentityModel):
    """An embedding network `images [N, 3, H, W] in [-1, 1] → [N, D]` behind the `IdentityModel` interface.

    The network's own `embed` is used when it has one, else it is called. Its `threshold`,
    `differentiable` and `name` attributes are taken over when present. It works on images in the
    network's own framing only: real photos are refused, since no face alignment is defined for it.
    """

    def __init__(self, network: Any, name: str, threshold: float = 0.5, differentiable: bool = True) -> None:
        self.network = network
        self.name = str(getattr(network, "name", name))
        self.threshold = float(getattr(network, "threshold", threshold))
        self.differentiable = bool(getattr(network, "differentiable", differentiable))
        dims = (getattr(network, a, 0) for a in ("dim", "embed_dim", "embedding_dim"))
        self.dim = int(next((d for d in dims if isinstance(d, int) and d > 0), 0))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        fn = getattr(self.network, "embed", None) or self.network
        out = fn(images)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise TypeError(
                f"{self.name}: expected the network to return [N, D] embeddings, got {type(out).__name__}"
            )
        self.dim = out.shape[1]
        return F.normalize(out, dim=-1)

    def embed_faces(self, rgbs: Sequence[np.ndarray], found: Sequence[faces.Face]) -> torch.Tensor:
        raise InputError(
            f"identity model {self.name!r} embeds images of its own world only, not real photos; "
            "use --identity-model dlib (or arcface:PATH / curricularface:PATH) for photos"
        )

    def embed_photos(self, photos: Iterable[Photo], face: str = "single") -> torch.Tensor:
        return self.embed_faces([], [])


def as_identity_model(obj: Any, name: str) -> IdentityModel:
    """`obj` itself when it already is an `IdentityModel`, else `obj` wrapped as one."""
    if isinstance(obj, IdentityModel):
        return obj
    if not callable(obj) and not hasattr(obj, "embed"):
        raise TypeError(f"{name}: {type(obj).__name__} is neither an IdentityModel nor an embedding network")
    return WrappedIdentityModel(obj, name)
