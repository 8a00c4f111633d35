"""The `Generator` interface that unlearning and evaluation rely on (see docs/reference/architecture.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Generator(nn.Module, ABC):
    """A pretrained image generator seen through the interface the unlearning engine needs.

    Shapes: `z` is `[B, z_dim]`, `ws` is `[B, num_ws, w_dim]`, `c` (camera) is `[B, c_dim]`, images are
    `[B, 3, H, W]` floats in [-1, 1].

    Backends also name the helper models that belong to their world (identity model, inversion encoder,
    real data); these return None when the backend has none.
    """

    name: str = "generator"
    # how the model frames a face: "ffhq" (NVIDIA's face models, EG3D): a photo is aligned to FFHQ's crop
    # (eyes and mouth where FFHQ puts them, `identity.framing.align_photo`) before it is inverted; None:
    # photos are taken as they are (centre-cropped to a square)
    photo_framing: str | None = None
    z_dim: int
    w_dim: int
    num_ws: int
    c_dim: int
    img_resolution: int

    @property
    @abstractmethod
    def w_avg(self) -> torch.Tensor:
        """The mean of W, `[w_dim]`."""

    @abstractmethod
    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0) -> torch.Tensor:
        """z `[B, z_dim]` → ws `[B, num_ws, w_dim]`."""

    @abstractmethod
    def synthesis(self, ws: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """ws `[B, num_ws, w_dim]` (+ camera) → images `[B, 3, H, W]` in [-1, 1]."""

    @abstractmethod
    def features(self, ws: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The intermediate representation the feature-MSE loss compares (EG3D: tri-planes)."""

    def synthesis_with_features(self, ws: torch.Tensor, c: torch.Tensor | None = None):
        """(images, features) — backends override this to get both from one pass."""
        return self.synthesis(ws, c), self.features(ws, c)

    @abstractmethod
    def adapter_sites(self) -> list[str]:
        """Names (from `self.named_modules()`) of the modules after whose output an adapter goes."""

    @abstractmethod
    def views(self, n: int) -> torch.Tensor:
        """`n` evaluation cameras `[n, c_dim]` (the reference: yaws evenly in ±π/12 at pitch −0.2)."""

    # the `UnlearnConfig` preset taken when the user names none (EG3D: "reference", the papers' model)
    default_preset: str | None = None

    def use_reference_protocol(self) -> list[str]:
        """Switch the backend's own settings to the reference code's (noise, cameras) for `--preset
        reference`; returns one line per change made (none here)."""
        return []

    def view_at(self, u: float) -> torch.Tensor:
        """The camera `[1, c_dim]` a fraction `u` ∈ [0, 1] of the way across the evaluation views' yaw range
        (0: the first view, 1: the last). Here a linear interpolation between the two end views, right for
        cameras that are linear in yaw; backends whose cameras are not (EG3D's poses) override it."""
        ends = self.views(2)
        return ends[:1] + float(u) * (ends[1:] - ends[:1])

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.mapping(z, c, truncation_psi=truncation_psi), c)

    def random_cameras(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cameras for training: by default drawn from the evaluation views."""
        views = self.views(11)
        idx = torch.randint(0, views.shape[0], (n,), generator=generator)
        return views[idx]

    # Helper models of the backend's world -------------------------------------------------------
    def identity_model(self):
        """The identity embedder that judges this world's faces (`.embed`, `.threshold`), or None."""
        return None

    def inverter(self):
        """Image → ws: by default projection into W+ through `synthesis` from the front camera
        (`legato.inversion.projection`: NVIDIA's projector schedule, a perceptual distance with an offline
        fallback, noise maps regularised); a backend with a learned encoder returns that instead."""
        from legato.inversion.projection import Projector

        return Projector(self)

    def real_images(self, n: int, seed: int = 0) -> torch.Tensor | None:
        """`n` images of the data the generator was trained on (for ΔFID_real), or None."""
        return None

    def synthesis_parameters(self) -> list[nn.Parameter]:
        """What full fine-tuning (GUIDE) trains: every parameter outside the mapping network."""
        return [p for name, p in self.named_parameters() if "mapping" not in name.split(".")[0]]
