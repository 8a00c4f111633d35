"""`--judge-crop`: how the judge crops generated faces before embedding them.

- `fixed` (the default): the identity model's own alignment; for ArcFace-family models the fixed
  similarity transform from the FFHQ framing to the template (`align_ffhq`), differentiable.
- `mtcnn:DIR`: MTCNN finds each face and its landmarks are warped onto the template, as the papers'
  evaluation (LEGATO's `id_sim.py`) does; DIR holds `pnet.npy`, `rnet.npy` and `onet.npy`. Only for
  ArcFace-family judges (`arcface:PATH`, `curricularface:PATH`), which embed 112×112 template crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from legato.errors import InputError
from legato.identity.base import IdentityModel, check_images
from legato.identity.faces import Face
from legato.identity.mtcnn import MTCNN, mtcnn_crops

JUDGE_CROPS = "fixed | mtcnn:DIR"


class MTCNNCropped(IdentityModel):
    """An ArcFace-family model (`embed_crops` on 112² template crops) that embeds generator images through
    MTCNN crops (`mtcnn.mtcnn_crops`) instead of its fixed transform. Not differentiable: the images go
    through uint8 and a detector.

    `images` and `fallbacks` count the images embedded so far and those in which MTCNN found no face (they
    get the fixed crop instead).
    """

    differentiable = False
    crop = "mtcnn"

    def __init__(self, model: IdentityModel, detector: MTCNN) -> None:
        if not callable(getattr(model, "embed_crops", None)) or getattr(model, "crop_size", None) != 112:
            name = getattr(model, "name", type(model).__name__)
            raise InputError(f"--judge-crop mtcnn needs an ArcFace-family judge (arcface:PATH or "
                             f"curricularface:PATH), which embeds 112×112 template crops; {name!r} does not")
        self.model, self.detector = model, detector
        self.name, self.threshold, self.dim = model.name, model.threshold, model.dim
        self.images = 0
        self.fallbacks = 0

    def to(self, device: str | torch.device) -> MTCNNCropped:
        if callable(getattr(self.model, "to", None)):
            self.model.to(device)
        self.detector.to(device)
        return self

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        crops, found = mtcnn_crops(images, self.detector)
        self.images += int(found.numel())
        self.fallbacks += int((~found).sum())
        network = getattr(self.model, "network", None)
        device = next(network.parameters()).device if isinstance(network, torch.nn.Module) else images.device
        return F.normalize(self.model.embed_crops(crops.to(device)), dim=-1).to(images.device)

    def embed_faces(self, rgbs: Sequence[np.ndarray], found: Sequence[Face]) -> torch.Tensor:
        return self.model.embed_faces(rgbs, found)

    def __repr__(self) -> str:
        return f"MTCNNCropped({self.model!r})"


def load_judge_crop(spec: str | None) -> MTCNN | None:
    """The detector `spec` names (`mtcnn:DIR`), or None for the fixed crop (`fixed` or None)."""
    if spec is None or spec.strip().lower() == "fixed":
        return None
    kind, _, arg = spec.partition(":")
    if kind.strip().lower() != "mtcnn":
        raise InputError(f"unknown --judge-crop {spec!r}; choose {JUDGE_CROPS}")
    if not arg:
        raise InputError("--judge-crop mtcnn needs the folder holding pnet.npy, rnet.npy and onet.npy: "
                         "--judge-crop mtcnn:DIR")
    return MTCNN.from_dir(arg)


def with_judge_crop(model: IdentityModel | None, detector: MTCNN | None) -> IdentityModel | None:
    """`model` judging on MTCNN crops from `detector`; `model` itself when `detector` is None."""
    if detector is None:
        return model
    if model is None:
        raise InputError("--judge-crop mtcnn needs an identity model to judge with: give "
                         "curricularface:PATH (or arcface:PATH)")
    return MTCNNCropped(model, detector)
