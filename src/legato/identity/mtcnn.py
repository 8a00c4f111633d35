"""MTCNN face detection and the 112×112 crops the papers' ID metric is computed on.

LEGATO's `id_sim.py` judges identity with CurricularFace IR-101 on crops made by the MTCNN code in its
`mtcnn/` folder: each generated image is saved as a PNG, three networks find the faces (P-Net slides over
an image pyramid, R-Net and O-Net re-score and refine its boxes, O-Net also gives five landmarks), and the
first face's landmarks are mapped onto the 112×112 ArcFace template by a similarity transform.
`MTCNN.detect` and `mtcnn_crops` do the same with this module's own code, keeping what the numbers depend
on, quirks included:

- stage thresholds 0.15 / 0.25 / 0.35, the defaults of the detector class `id_sim.py` builds (MTCNN's
  published 0.6 / 0.7 / 0.8 are one `MTCNNConfig` away);
- P-Net's face probability is a softmax over the width of its output map, not over its two classes
  (`pnet_softmax="width"`; "classes" is the original MTCNN's);
- a box is clipped to the image when it is cut out, and the steps after that use the clipped box;
- the similarity transform is fitted from the template to the landmarks (least squares in the image) and
  then inverted; reflections are never used;
- the crop is sampled bilinearly without antialiasing, black outside the image, and rounded to uint8.

Weights: that code's `pnet.npy`, `rnet.npy` and `onet.npy` (each a pickled dict name → array), read
without running code by `checkpoints.read_pickled_arrays`. facenet-pytorch's `pnet.pt` / `rnet.pt` /
`onet.pt` are not accepted: besides other names, their dense layers take their inputs flattened in another
order (height, width, channel instead of channel, width, height), a conversion that could not be checked
against real files here.

Coordinates: boxes and landmarks are pixel indices, as that code gives them (the pixel in row i, column j
is the point (j, i)); `align.py`'s continuous coordinates are these + 0.5.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from legato.errors import CheckpointError, InputError
from legato.identity.align import ARCFACE_TEMPLATE_112, align_ffhq, similarity_transform, warp
from legato.identity.checkpoints import read_pickled_arrays, state_mismatch

WEIGHT_FILES = {"pnet": "pnet.npy", "rnet": "rnet.npy", "onet": "onet.npy"}
CELL, STRIDE = 12, 2  # P-Net sees 12×12 windows every 2 pixels of a pyramid level


class _FlattenTransposed(nn.Module):
    """`[B, C, H, W]` → `[B, C·W·H]`, columns before rows: the order the converted Caffe weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(2, 3).flatten(1)


def _conv(name: str, c_in: int, c_out: int, k: int) -> list[tuple[str, nn.Module]]:
    return [(f"conv{name}", nn.Conv2d(c_in, c_out, k)), (f"prelu{name}", nn.PReLU(c_out))]


def _pool(name: str, k: int) -> list[tuple[str, nn.Module]]:
    return [(f"pool{name}", nn.MaxPool2d(k, 2, ceil_mode=True))]


class PNet(nn.Module):
    """The proposal network, fully convolutional: `[B, 3, H, W]` → face logits `[B, 2, H', W']` and box
    offsets `[B, 4, H', W']`, one per 12×12 window at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(_conv("1", 3, 10, 3) + _pool("1", 2) + _conv("2", 10, 16, 3) + _conv("3", 16, 32, 3))
        )
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x)
        return self.conv4_1(x), self.conv4_2(x)


class RNet(nn.Module):
    """The refinement network: 24×24 cut-outs `[B, 3, 24, 24]` → face logits `[B, 2]`, box offsets `[B, 4]`."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            _conv("1", 3, 28, 3) + _pool("1", 3) + _conv("2", 28, 48, 3) + _pool("2", 3) + _conv("3", 48, 64, 2)
            + [("flatten", _FlattenTransposed()), ("conv4", nn.Linear(576, 128)), ("prelu4", nn.PReLU(128))]
        ))
        self.conv5_1 = nn.Linear(128, 2)
        self.conv5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x)
        return self.conv5_1(x), self.conv5_2(x)


class ONet(nn.Module):
    """The output network: 48×48 cut-outs `[B, 3, 48, 48]` → face logits `[B, 2]`, box offsets `[B, 4]` and
    landmarks `[B, 10]` (five x as fractions of the box width, then five y as fractions of its height)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            _conv("1", 3, 32, 3) + _pool("1", 3) + _conv("2", 32, 64, 3) + _pool("2", 3) + _conv("3", 64, 64, 3)
            + _pool("3", 2) + _conv("4", 64, 128, 2)
            + [("flatten", _FlattenTransposed()), ("conv5", nn.Linear(1152, 256)), ("prelu5", nn.PReLU(256))]
        ))  # the reference's dropout before prelu5 does nothing at inference and has no weights
        self.conv6_1 = nn.Linear(256, 2)
        self.conv6_2 = nn.Linear(256, 4)
        self.conv6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.features(x)
        return self.conv6_1(x), self.conv6_2(x), self.conv6_3(x)


@dataclass
class MTCNNConfig:
    """Detection settings; the defaults are those of the MTCNN class LEGATO's `id_sim.py` uses."""

    min_face_size: float = 20.0  # pixels: the pyramid's first level maps this size to P-Net's 12
    thresholds: tuple[float, float, float] = (0.15, 0.25, 0.35)  # face probability kept by P-, R-, O-Net
    nms_thresholds: tuple[float, float, float] = (0.7, 0.7, 0.7)  # after P-Net (all levels), R-Net, O-Net
    pyramid_factor: float = 0.707  # √½: each pyramid level halves the area
    pnet_softmax: Literal["width", "classes"] = "width"  # see the module docstring


@dataclass(frozen=True)
class FaceDetection:
    """One face found by MTCNN, in pixel indices of the image it was found in."""

    box: tuple[float, float, float, float]  # left, top, right, bottom (both ends inside the face)
    score: float  # O-Net's face probability
    landmarks: np.ndarray = field(repr=False)  # [5, 2] (x, y): the eyes, the nose tip, the mouth corners


def pyramid_scales(height: int, width: int, min_face_size: float = 20.0, factor: float = 0.707) -> list[float]:
    """The image scales P-Net runs at: a face of `min_face_size` pixels first becomes 12 pixels, then each
    level shrinks by `factor` while the shorter side stays above 12 pixels."""
    first = CELL / min_face_size
    scales, side = [], min(height, width) * first
    while side > CELL:
        scales.append(first * factor ** len(scales))
        side *= factor
    return scales


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression → indices of the boxes kept, best score first.

    `boxes` `[N, 4]` in pixel indices (a box from column 3 to 5 is 3 pixels wide); a box is dropped when its
    overlap with a better one is above `threshold`: intersection over union, or over the smaller box
    (`mode="min"`).
    """
    if mode not in ("union", "min"):
        raise ValueError(f"unknown NMS mode {mode!r}")
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    order = np.argsort(scores)  # ascending: the best box is the last
    keep = []
    while order.size:
        best, rest = order[-1], order[:-1]
        keep.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1.0)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1.0)
        inter = w * h
        denom = np.minimum(area[best], area[rest]) if mode == "min" else area[best] + area[rest] - inter
        order = rest[~(inter / denom > threshold)]
    return np.asarray(keep, dtype=np.int64)


def calibrate(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each side of `boxes` `[N, 4]` by a network's `offsets` `[N, 4]`, in units of the box's size."""
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    return boxes + np.stack([w, h, w, h], axis=1) * offsets


def square(boxes: np.ndarray) -> np.ndarray:
    """The square with the same centre as each box `[N, 4]` and its longer side."""
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    side = np.maximum(w, h)
    left = boxes[:, 0] + 0.5 * w - 0.5 * side
    top = boxes[:, 1] + 0.5 * h - 0.5 * side
    return np.stack([left, top, left + side - 1.0, top + side - 1.0], axis=1)


def _network_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 or float `[..., H, W, 3]` → the networks' input scale, channels first."""
    return (np.moveaxis(np.asarray(rgb, dtype=np.float32), -1, -3) - 127.5) * 0.0078125


def _cut_out(image: Image.Image, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The `size`² network inputs `[N, 3, size, size]` of integer `boxes` `[N, 4]`, and the boxes clipped to
    the image (what the reference goes on with). Parts of a box outside the image are black."""
    rgb = np.asarray(image)
    height, width = rgb.shape[:2]
    b = boxes.astype(np.int64)
    clipped = np.stack([np.maximum(boxes[:, 0], 0.0), np.maximum(boxes[:, 1], 0.0),
                        np.minimum(boxes[:, 2], width - 1.0), np.minimum(boxes[:, 3], height - 1.0)], axis=1)
    out = np.zeros((len(b), 3, size, size), np.float32)
    for i, (left, top, right, bottom) in enumerate(b):
        patch = np.zeros((bottom - top + 1, right - left + 1, 3), np.uint8)
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, width - 1), min(bottom, height - 1)
        patch[y0 - top:y1 - top + 1, x0 - left:x1 - left + 1] = rgb[y0:y1 + 1, x0:x1 + 1]
        out[i] = _network_input(Image.fromarray(patch).resize((size, size), Image.BILINEAR))
    return out, clipped


def _cuttable(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boxes at least a pixel wide that overlap the image (the reference fails on any other)."""
    return ((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1]) & (boxes[:, 0] <= width - 1)
            & (boxes[:, 1] <= height - 1) & (boxes[:, 2] >= 0) & (boxes[:, 3] >= 0))


class MTCNN(nn.Module):
    """The three MTCNN networks and the detection pipeline around them (see the module docstring)."""

    def __init__(self, config: MTCNNConfig | None = None) -> None:
        super().__init__()
        self.config = config or MTCNNConfig()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_dir(cls, path: str | Path, config: MTCNNConfig | None = None) -> MTCNN:
        """Load `pnet.npy`, `rnet.npy` and `onet.npy` from the folder `path` (never runs code from them)."""
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"{path}: no such folder (MTCNN needs the folder holding pnet.npy, rnet.npy, onet.npy)")
        model = cls(config)
        for name, filename in WEIGHT_FILES.items():
            file = path / filename
            if not file.is_file():
                raise InputError(f"{path}: has no {filename} (MTCNN needs pnet.npy, rnet.npy and onet.npy)")
            _load_arrays(getattr(model, name), read_pickled_arrays(file), file)
        return model

    @classmethod
    def random(cls, seed: int = 0, config: MTCNNConfig | None = None) -> MTCNN:
        """Random weights from `seed` (for tests: they find no real faces)."""
        gen = torch.Generator().manual_seed(seed)
        model = cls(config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "prelu" in name:
                    p.fill_(0.25)
                elif name.endswith("bias"):
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
        return model

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _run(self, net: nn.Module, x: np.ndarray, softmax_dim: int = 1) -> list[np.ndarray]:
        """`net`'s outputs as float32 arrays, the face logits turned into probabilities along `softmax_dim`."""
        logits, *rest = net(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return [o.float().cpu().numpy() for o in (torch.softmax(logits, dim=softmax_dim), *rest)]

    @torch.no_grad()
    def detect(self, rgb: np.ndarray) -> list[FaceDetection]:
        """The faces in an RGB uint8 image `[H, W, 3]`, best first; an empty list when there is none."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", type(rgb).__name__)
            raise InputError(f"MTCNN.detect takes an RGB uint8 image [H, W, 3], got {shape} "
                             f"{getattr(rgb, 'dtype', '')}".rstrip())
        cfg = self.config
        image = Image.fromarray(rgb)
        height, width = rgb.shape[:2]
        boxes, scores = self._proposals(image)
        for stage, (net, size) in enumerate(((self.rnet, 24), (self.onet, 48)), start=1):
            cuttable = _cuttable(boxes, height, width)
            boxes, scores = boxes[cuttable], scores[cuttable]
            if not len(boxes):
                return []
            crops, boxes = _cut_out(image, boxes, size)
            probs, offsets, *marks = self._run(net, crops)
            keep = probs[:, 1] > cfg.thresholds[stage]
            boxes, scores, offsets = boxes[keep], probs[keep, 1].astype(np.float64), offsets[keep]
            marks = [m[keep] for m in marks]
            if stage == 1:  # R-Net: its best boxes, moved by its offsets, become O-Net's input
                keep = nms(boxes, scores, cfg.nms_thresholds[1])
                boxes, scores = np.round(square(calibrate(boxes[keep], offsets[keep]))), scores[keep]
        # O-Net: landmarks relative to the (clipped) box it saw; then its offsets and a last NMS
        w = boxes[:, 2:3] - boxes[:, 0:1] + 1.0
        h = boxes[:, 3:4] - boxes[:, 1:2] + 1.0
        landmarks = np.stack([boxes[:, 0:1] + w * marks[0][:, :5], boxes[:, 1:2] + h * marks[0][:, 5:]], axis=2)
        boxes = calibrate(boxes, offsets)
        keep = nms(boxes, scores, cfg.nms_thresholds[2], mode="min")
        return [FaceDetection(box=tuple(float(v) for v in boxes[i]), score=float(scores[i]),
                              landmarks=landmarks[i].astype(np.float32)) for i in keep]

    def _proposals(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """P-Net over the pyramid: candidate boxes `[N, 4]` (moved by P-Net's offsets, squared, whole
        pixels) and their scores `[N]`."""
        cfg = self.config
        width, height = image.size
        found = []
        for scale in pyramid_scales(height, width, cfg.min_face_size, cfg.pyramid_factor):
            level = image.resize((math.ceil(width * scale), math.ceil(height * scale)), Image.BILINEAR)
            probs, offsets = self._run(self.pnet, _network_input(level)[None],
                                       softmax_dim=-1 if cfg.pnet_softmax == "width" else 1)
            rows, cols = np.where(probs[0, 1] > cfg.thresholds[0])
            if not rows.size:
                continue
            boxes = np.stack([np.round((STRIDE * cols + 1.0) / scale), np.round((STRIDE * rows + 1.0) / scale),
                              np.round((STRIDE * cols + 1.0 + CELL) / scale),
                              np.round((STRIDE * rows + 1.0 + CELL) / scale)], axis=1)
            scores = probs[0, 1, rows, cols].astype(np.float64)
            level_offsets = offsets[0][:, rows, cols].T.astype(np.float64)
            keep = nms(boxes, scores, 0.5)  # within one level
            found.append((boxes[keep], scores[keep], level_offsets[keep]))
        if not found:
            return np.zeros((0, 4)), np.zeros(0)
        boxes, scores, offsets = (np.concatenate(parts) for parts in zip(*found, strict=True))
        keep = nms(boxes, scores, cfg.nms_thresholds[0])
        return np.round(square(calibrate(boxes[keep], offsets[keep]))), scores[keep]

    def extra_repr(self) -> str:
        c = self.config
        return (f"min_face_size={c.min_face_size}, thresholds={c.thresholds}, nms={c.nms_thresholds}, "
                f"pnet_softmax={c.pnet_softmax!r}")


def _load_arrays(net: nn.Module, arrays: dict[str, np.ndarray], file: Path) -> None:
    """Copy `arrays` into `net` by name, or raise a `CheckpointError` saying what does not fit."""
    mismatch = state_mismatch(net.state_dict(), arrays)
    if mismatch:
        raise CheckpointError(f"{file}: does not fit MTCNN's {type(net).__name__}: {mismatch}")
    bad = [k for k, a in arrays.items() if not np.issubdtype(a.dtype, np.floating)]
    if bad:
        raise CheckpointError(f"{file}: {bad[0]} holds {arrays[bad[0]].dtype} values, not floats")
    net.load_state_dict({k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in arrays.items()})


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """Images in [-1, 1] `[N, 3, H, W]` → RGB uint8 `[H, W, 3]` as EG3D's scripts save them as PNG:
    ⌊x·127.5 + 128⌋, clamped to [0, 255]."""
    arr = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return [np.ascontiguousarray(a) for a in arr.permute(0, 2, 3, 1).cpu().numpy()]


def template_transform(landmarks: np.ndarray, template: np.ndarray = ARCFACE_TEMPLATE_112) -> np.ndarray:
    """The `[2, 3]` similarity taking an image to the template's crop, from five landmarks `[5, 2]` in
    continuous coordinates: fitted from the template to the landmarks and inverted, as the reference does
    (least squares in the image, not in the crop; the two differ by up to a few pixels on real faces)."""
    fit = np.vstack([similarity_transform(template, landmarks), [0.0, 0.0, 1.0]])
    return np.linalg.inv(fit)[:2]


@torch.no_grad()
def mtcnn_crops(
    images: torch.Tensor, detector: MTCNN, size: int = 112, template: np.ndarray = ARCFACE_TEMPLATE_112
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator images `[N, 3, H, W]` in [-1, 1] → the reference's aligned crops `[N, 3, size, size]` in
    [-1, 1] (on `images.device`), and `found` `[N]` (bool): whether MTCNN found a face.

    Each image goes to uint8 (as a saved PNG), the first face MTCNN finds is warped onto `template` and
    the crop is rounded to uint8 again. An image with no face gets the fixed crop (`align_ffhq`) instead.
    """
    crops = torch.empty(images.shape[0], 3, size, size)
    found = torch.zeros(images.shape[0], dtype=torch.bool)
    for i, rgb in enumerate(to_uint8(images)):
        faces = detector.detect(rgb)
        if not faces:
            continue
        found[i] = True
        matrix = template_transform(faces[0].landmarks.astype(np.float64) + 0.5, template)  # to continuous
        pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None].double()
        crop = warp(pixels, matrix, size, antialias=False, padding_mode="zeros")
        crops[i] = crop[0].round().clamp(0, 255).float() / 127.5 - 1
    if not found.all():
        missing = (~found).nonzero().flatten()
        crops[missing] = align_ffhq(images[missing.to(images.device)].float(), size, template).cpu()
    return crops.to(images.device), found
