"""dlib judges the `lfw-faces` world, and only judges: no loss, gate, target or default reads it.

Every image, real or generated, goes through one pipeline: the 32² face (an aligned dlib chip with
padding 0.4) is upsampled to 150² (bicubic), dlib's HOG detector looks for a face (upsampling once), its
5-point shape aligns the usual 150² chip (padding 0.25) and the ResNet describes it (mirrored and
averaged). A person's **centroid** is the mean descriptor of their held-out real photos (never trained on).
A sample is **recognised** as person p when a face was found, the nearest centroid is p's and the
distance to it is below dlib's 0.6. The **recognition rate** of p is the share of p's samples recognised
as p; the **face rate** the share in which dlib found a face at all.

FID here is "FID_dlib": the Fréchet distance of dlib descriptors, because Inception weights are not on
this machine; those features come from a fixed crop (the 0.25-padding chip's place inside the 0.4 one,
no detector), so every image has one, face found or not. It is comparable within this world only.

What ships (`reference.safetensors`): the 62 centroids and the held-out photos' FID descriptors — numbers
computed from the photos, not photos or crops — so the world is judged on a machine without LFW. With LFW
on disk, `build_reference` recomputes them (the tests check they match).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from legato.errors import InputError

REFERENCE_FILE = Path(__file__).resolve().parent / "weights" / "reference.safetensors"
JUDGE_SIZE = 150
MATCH_DISTANCE = 0.6  # dlib's own same-person distance
# the place of a padding-0.25 chip inside a padding-0.4 one: dlib maps its face template to
# [p, 1 + p] / (1 + 2p) of the chip's side, so the 0.25 chip spans (0.4 − 0.25) / 1.8 … (1.4 + 0.25) / 1.8
FIXED_CROP = ((0.4 - 0.25) / 1.8, (1.4 + 0.25) / 1.8)


def _upsampled(images: torch.Tensor) -> list[np.ndarray]:
    from PIL import Image

    from legato.identity import faces

    return [np.asarray(Image.fromarray(rgb).resize((JUDGE_SIZE, JUDGE_SIZE), Image.BICUBIC))
            for rgb in faces.tensor_to_rgb(images)]


@dataclass
class Judged:
    """Per image: `found` (bool), `nearest` (class index), `distance` to its centroid, `recognised_as`
    (the nearest class when found and within 0.6, else −1)."""

    found: torch.Tensor
    nearest: torch.Tensor
    distance: torch.Tensor

    @property
    def recognised_as(self) -> torch.Tensor:
        ok = self.found & (self.distance < MATCH_DISTANCE)
        return torch.where(ok, self.nearest, torch.full_like(self.nearest, -1))


class DlibJudge:
    """`judge(images)` → `Judged`; `fid_features(images)` → `[N, 128]`; `centroids` `[K, 128]`."""

    name = "dlib"

    def __init__(self, centroids: torch.Tensor | None = None, real_features: torch.Tensor | None = None,
                 people: list[str] | None = None) -> None:
        from legato.identity.dlib_model import DlibModel

        self.model = DlibModel()
        self.centroids, self.real_features, self.people = centroids, real_features, people

    @classmethod
    def shipped(cls, path: str | Path = REFERENCE_FILE) -> DlibJudge:
        centroids, real, people = load_reference(path)
        return cls(centroids, real, people)

    def descriptors(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(found `[N]` bool, raw descriptors `[N, 128]`; zeros where no face was found)."""
        from legato.identity import faces

        found, chips = [], []
        for rgb in _upsampled(images):
            boxes = faces.detect_boxes(rgb, self.model.config.upsample)
            found.append(bool(boxes))
            if boxes:
                box = faces.choose_face(boxes, rgb.shape[:2], "largest", "<sample>")
                chips.append(self.model.chip(rgb, faces.Face(box=box)))
        desc = self.model.describe_chips(chips)
        out = torch.zeros(len(found), self.model.dim)
        idx = [i for i, f in enumerate(found) if f]
        if idx:
            out[idx] = desc
        return torch.tensor(found, dtype=torch.bool), out

    def fid_features(self, images: torch.Tensor) -> torch.Tensor:
        """dlib descriptors of the fixed crop (no detector) `[N, 128]` float64."""
        from PIL import Image

        a, b = (round(f * JUDGE_SIZE) for f in FIXED_CROP)
        chips = [np.asarray(Image.fromarray(rgb[a:b, a:b]).resize((JUDGE_SIZE, JUDGE_SIZE), Image.BICUBIC))
                 for rgb in _upsampled(images)]
        return self.model.describe_chips(chips).double()

    def judge(self, images: torch.Tensor) -> Judged:
        return self.judge_descriptors(*self.descriptors(images))

    def judge_descriptors(self, found: torch.Tensor, desc: torch.Tensor) -> Judged:
        """`judge` from `descriptors`' output (what a cache of the source model's samples keeps)."""
        if self.centroids is None:
            raise InputError("the judge has no centroids: load the shipped reference or build one")
        d = torch.cdist(desc.double(), self.centroids.double())
        dist, nearest = d.min(1)
        return Judged(found=found, nearest=nearest, distance=dist.float())


def build_reference(faceset, judge: DlibJudge | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Centroids `[K, 128]` from each person's held-out photos (where dlib finds the face) and the held-out
    photos' FID features, plus a summary (how many photos gave each centroid, the held-out recognition)."""
    judge = judge or DlibJudge()
    x, y = faceset.tensors(held_out=True)
    found, desc = judge.descriptors(x)
    k = len(faceset.names)
    centroids = torch.zeros(k, desc.shape[1])
    counts = []
    for p in range(k):
        keep = (y == p) & found
        if not keep.any():
            raise InputError(f"dlib found no face in any held-out photo of {faceset.names[p]}")
        centroids[p] = desc[keep].mean(0)
        counts.append(int(keep.sum()))
    real = judge.fid_features(x)
    summary = {"held_out_photos": int(y.numel()), "face_found": float(found.float().mean()),
               "photos_per_centroid": counts}
    return centroids, real, summary


def save_reference(path: str | Path, centroids: torch.Tensor, real: torch.Tensor, people: list[str],
                   summary: dict) -> None:
    from safetensors.torch import save_file

    save_file({"centroids": centroids.float().contiguous(), "real_fid_features": real.float().contiguous()},
              str(path), metadata={"format": "legato-lfw-faces-judge", "people": json.dumps(people),
                                   "summary": json.dumps(summary)})


def load_reference(path: str | Path = REFERENCE_FILE) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no judge reference; build one with `legato lfw-faces reference`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "legato-lfw-faces-judge":
                raise InputError(f"{path}: not an lfw-faces judge reference")
            return f.get_tensor("centroids"), f.get_tensor("real_fid_features"), json.loads(meta["people"])
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise InputError(f"{path}: unreadable judge reference ({e})") from e


def recognition_rates(judged: Judged, labels: torch.Tensor, k: int) -> dict:
    """Per person: recognition rate and face rate of the samples labelled p; and their means."""
    rec = judged.recognised_as == labels
    rates, face = [], []
    for p in range(k):
        m = labels == p
        if m.any():
            rates.append(float(rec[m].float().mean()))
            face.append(float(judged.found[m].float().mean()))
        else:
            rates.append(None)
            face.append(None)
    vals = [r for r in rates if r is not None]
    fvals = [f for f in face if f is not None]
    return {"recognition": rates, "face_found": face,
            "mean_recognition": sum(vals) / len(vals) if vals else None,
            "mean_face_found": sum(fvals) / len(fvals) if fvals else None}
