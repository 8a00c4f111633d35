"""dlib's ResNet face-recognition model (`dlib_face_recognition_resnet_model_v1`), evaluation only.

The network takes 150×150 chips cut by `dlib.get_face_chip` from the 5-point shape and returns 128-d
descriptors; dlib calls two faces the same person when the Euclidean distance of their descriptors is
below 0.6 (dlib reports 99.38% on LFW with that rule, descriptors averaged over 100 jittered chips). The
descriptors are not unit length (mean norm 1.43 on LFW, see docs/reference/identity.md), so `legato` uses the
cosine threshold that matches distance 0.6 at that norm, `DLIB_COSINE_THRESHOLD`; `dlib_distance` keeps
dlib's own rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from legato.identity import faces
from legato.identity.base import IdentityModel, Photo, check_images

DLIB_DISTANCE_THRESHOLD = 0.6  # dlib's published rule on raw 128-d descriptors
DLIB_MEAN_NORM = 1.43  # mean descriptor norm over the 7,701 LFW pair images (docs/reference/identity.md)
# For two descriptors of norm r, |a - b|² = 2r²(1 - cos): distance 0.6 ⇔ cos = 1 - 0.36 / (2 r²).
DLIB_COSINE_THRESHOLD = round(1 - DLIB_DISTANCE_THRESHOLD**2 / (2 * DLIB_MEAN_NORM**2), 3)

# Where HOG puts the face in an FFHQ-framed image (fractions of the side; measured on
# shared/data/faces/ffhq/00072.png). Used when the detector finds no face in a generator's output.
FFHQ_FACE_BOX = (0.19, 0.26, 0.82, 0.89)


@dataclass
class DlibConfig:
    """Settings of dlib's pipeline (defaults: `dlib.compute_face_descriptor`'s own)."""

    chip_size: int = 150  # the network's input
    padding: float = 0.25  # context around the face in the chip
    jitters: int = 0  # dlib's random re-crops averaged per face (0: the chip alone; dlib used 100 for LFW)
    mirror: bool = True  # also describe the mirrored chip and average the two (LFW: 0.9868 → 0.9903)
    upsample: int = 1  # HOG detector upsampling (finds faces down to ~40 px)
    cnn_fallback: bool = False  # try dlib's CNN face detector when HOG finds nothing (slow on CPU)


def dlib_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's own comparison: Euclidean distance of raw descriptors (same person below 0.6)."""
    return (a - b).norm(dim=-1)


class DlibModel(IdentityModel):
    """The dlib face-recognition ResNet shipped by `face-recognition-models` (not differentiable)."""

    name = "dlib"
    threshold = DLIB_COSINE_THRESHOLD
    differentiable = False
    dim = 128
    crop = "dlib"

    def __init__(self, config: DlibConfig | None = None) -> None:
        self.config = config or DlibConfig()
        self._dlib = faces.import_dlib()
        self._net = self._dlib.face_recognition_model_v1(str(faces.model_file("recognition")))

    def chip(self, rgb: np.ndarray, face: faces.Face) -> np.ndarray:
        """The `chip_size`² RGB chip dlib's network expects, aligned by the 5-point shape in `face.box`."""
        shape = faces.landmarks5(rgb, face.box)
        return self._dlib.get_face_chip(rgb, shape, size=self.config.chip_size, padding=self.config.padding)

    def describe_chips(self, chips: list[np.ndarray]) -> torch.Tensor:
        """Raw 128-d descriptors of aligned chips (not unit length) → `[N, 128]` float32."""
        if not chips:
            return torch.zeros(0, self.dim)
        out = np.stack([self._describe(c) for c in chips])
        if self.config.mirror:
            out = (out + np.stack([self._describe(c[:, ::-1]) for c in chips])) / 2
        return torch.from_numpy(out).float()

    def _describe(self, chip: np.ndarray) -> np.ndarray:
        return np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(chip), self.config.jitters))

    def descriptors(self, photos: Iterable[Photo], face: str = "single") -> torch.Tensor:
        """Raw descriptors of real photos (dlib's distance rule applies to these) → `[N, 128]`."""
        chips = []
        for rgb, name in faces.iter_photos(photos):
            found = faces.find_face(rgb, name, face, self.config.upsample, self.config.cnn_fallback)
            chips.append(self.chip(rgb, found))
        return self.describe_chips(chips)

    def embed_faces(self, rgbs: Sequence[np.ndarray], found: Sequence[faces.Face]) -> torch.Tensor:
        chips = [self.chip(rgb, f) for rgb, f in zip(rgbs, found, strict=True)]
        return F.normalize(self.describe_chips(chips), dim=-1)

    def embed_photos(self, photos: Iterable[Photo], face: str = "single") -> torch.Tensor:
        return F.normalize(self.descriptors(photos, face), dim=-1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embed FFHQ-framed faces; the 5 points come from dlib on each image (not differentiable)."""
        check_images(images)
        chips = []
        for rgb in faces.tensor_to_rgb(images):
            h, w = rgb.shape[:2]
            boxes = faces.detect_boxes(rgb, self.config.upsample)
            if boxes:
                box = faces.choose_face(boxes, (h, w), "largest", "<image>")
            else:
                box = tuple(int(round(f * s)) for f, s in zip(FFHQ_FACE_BOX, (w, h, w, h), strict=True))
            chips.append(self.chip(rgb, faces.Face(box=box)))
        return F.normalize(self.describe_chips(chips), dim=-1).to(images.device)

    @property
    def raw(self) -> Any:
        """The underlying `dlib.face_recognition_model_v1`."""
        return self._net
