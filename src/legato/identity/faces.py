"""Finding faces in real photos: dlib's HOG detector and its 5- and 68-point shape predictors.

The model files come from the `face-recognition-models` package (optional extra `dlib`). That package's
own `__init__` imports `pkg_resources`, which recent setuptools no longer ships, so its folder is located
with `importlib.util.find_spec`, which finds a package without running it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from legato.errors import InputError, LegatoError

FacePolicy = Literal["single", "largest", "center"]
FACE_POLICIES: tuple[str, ...] = ("single", "largest", "center")

MODEL_FILES = {
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
}

_INSTALL_HINT = (
    "install the optional extra: pip install 'legato-unlearn[dlib]' (dlib-bin, face-recognition-models)"
)


class MissingDependencyError(LegatoError):
    """An optional package needed for this feature is not installed."""


def import_dlib() -> Any:
    """Import dlib, or raise an error that says which extra to install."""
    try:
        import dlib
    except ImportError as e:
        raise MissingDependencyError(f"dlib is not installed; {_INSTALL_HINT}") from e
    return dlib


def model_file(kind: str) -> Path:
    """Path of one of the dlib model files shipped by `face-recognition-models` (see `MODEL_FILES`)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"face-recognition-models is not installed; {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILES[kind]
    if not path.is_file():
        raise MissingDependencyError(f"{path} is missing; reinstall face-recognition-models")
    return path


@cache
def _detector() -> Any:
    return import_dlib().get_frontal_face_detector()


@cache
def _cnn_detector() -> Any:
    return import_dlib().cnn_face_detection_model_v1(str(model_file("cnn_detector")))


@cache
def _predictor(points: int) -> Any:
    return import_dlib().shape_predictor(str(model_file(f"landmarks{points}")))


@dataclass(frozen=True)
class Face:
    """One face found in a photo: its box (left, top, right, bottom in pixels) and how it was found."""

    box: tuple[int, int, int, int]
    found_by: str = "hog"  # hog | cnn | fallback (a fixed box, when the detectors found nothing)

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)


def read_rgb(photo: str | Path | Image.Image) -> tuple[np.ndarray, str]:
    """An RGB uint8 array `[H, W, 3]` and a name for messages, from a path or a PIL image."""
    if isinstance(photo, Image.Image):
        return np.ascontiguousarray(np.asarray(photo.convert("RGB"))), "<image>"
    path = Path(photo)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"))), str(path)
    except OSError as e:
        raise InputError(f"{path}: not a readable image ({e})") from e


def tensor_to_rgb(images: torch.Tensor) -> list[np.ndarray]:
    """Images in [-1, 1] `[N, 3, H, W]` (torch) → list of RGB uint8 arrays `[H, W, 3]`."""
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(dtype=torch.uint8)
    return [np.ascontiguousarray(a) for a in arr.permute(0, 2, 3, 1).cpu().numpy()]


def detect_boxes(rgb: np.ndarray, upsample: int = 1) -> list[tuple[int, int, int, int]]:
    """Face boxes found by dlib's HOG detector, upsampling the image `upsample` times first."""
    rects = list(_detector()(rgb, upsample))
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]


def _rect(box: tuple[int, int, int, int]) -> Any:
    return import_dlib().rectangle(*[int(v) for v in box])


def landmarks5(rgb: np.ndarray, box: tuple[int, int, int, int]) -> Any:
    """dlib's 5-point shape (two corners of each eye, the base of the nose) inside a face box."""
    return _predictor(5)(rgb, _rect(box))


def arcface_points(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The five points of the ArcFace template `[5, 2]` (x, y): eye centres, nose tip, mouth corners.

    They are read off dlib's 68-point shape (eyes: mean of points 36-41 and 42-47; nose tip 30; mouth
    corners 48 and 54), the image's left eye first.
    """
    shape = _predictor(68)(rgb, _rect(box))
    pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float64)
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])


def choose_face(
    boxes: Sequence[tuple[int, int, int, int]], size: tuple[int, int], policy: FacePolicy, name: str
) -> tuple[int, int, int, int]:
    """Pick one box by `policy`, or raise an error naming the photo.

    single: exactly one face must be found; largest: the biggest box; center: the box nearest the
    image centre (how LFW frames its subject).
    """
    if policy not in FACE_POLICIES:
        raise InputError(f"unknown face policy {policy!r}; choose one of {', '.join(FACE_POLICIES)}")
    if not boxes:
        raise InputError(f"{name}: no face found in the photo")
    if len(boxes) > 1 and policy == "single":
        raise InputError(f"{name}: {len(boxes)} faces found; crop the photo or pass --face largest")
    if policy == "center":
        h, w = size
        return min(boxes, key=lambda b: ((b[0] + b[2]) / 2 - w / 2) ** 2 + ((b[1] + b[3]) / 2 - h / 2) ** 2)
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


def find_face(
    rgb: np.ndarray,
    name: str,
    policy: FacePolicy = "single",
    upsample: int = 1,
    cnn_fallback: bool = False,
    fallback_box: tuple[float, float, float, float] | None = None,
) -> Face:
    """Detect the face chosen by `policy`.

    When nothing is found: dlib's CNN detector is tried if `cnn_fallback`, then `fallback_box` (fractions
    of width/height: left, top, right, bottom) is used if given, else an error names the photo.
    """
    h, w = rgb.shape[:2]
    boxes, found_by = detect_boxes(rgb, upsample), "hog"
    if not boxes and cnn_fallback:
        boxes, found_by = (
            [(r.left(), r.top(), r.right(), r.bottom()) for r in _cnn_rects(rgb, upsample)],
            "cnn",
        )
    if not boxes and fallback_box is not None:
        left, top, right, bottom = fallback_box
        return Face(
            box=(round(left * w), round(top * h), round(right * w), round(bottom * h)), found_by="fallback"
        )
    return Face(box=choose_face(boxes, (h, w), policy, name), found_by=found_by)


def _cnn_rects(rgb: np.ndarray, upsample: int) -> list[Any]:
    return [d.rect for d in _cnn_detector()(rgb, upsample)]


def iter_photos(photos: Iterable[str | Path | Image.Image]) -> Iterable[tuple[np.ndarray, str]]:
    for photo in photos:
        yield read_rgb(photo)
