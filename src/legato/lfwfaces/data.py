"""The LFW people of the `lfw-faces` world: which people, which photos train and which are held out, and
their faces aligned by dlib's own 5-point alignment.

The photos themselves never ship: `prepare` reads them from an LFW folder (default `../shared/data/lfw`
beside the checkout, or `LEGATO_LFW`) and caches the aligned faces as a `uint8` array under the user's cache
folder (`LEGATO_CACHE`, default `~/.cache/legato`). What ships is the list of people (names) and the recipe.

Split: each person's photos in LFW's numbering order; the last `held_out_count(n)` of them are held out
(never trained on) — they give the judge's centroids and the real images of FID.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from legato.errors import InputError
from legato.files import atomic_write_bytes
from legato.tensor_cache import cache_dir


@dataclass(frozen=True)
class FaceSetConfig:
    """The shipped world's choices (docs/reference/lfw-faces.md)."""

    min_photos: int = 20  # the 62 LFW people with at least 20 photos
    size: int = 32  # the generator's resolution
    # context around the face in dlib's chip: 0.4 keeps the whole face with some hair, and dlib's detector
    # still finds the face in 100% of these chips at 32² upsampled back (90 photos measured)
    padding: float = 0.4
    held_out_fraction: float = 0.2
    held_out_min: int = 5
    held_out_max: int = 30


def held_out_count(n: int, cfg: FaceSetConfig = FaceSetConfig()) -> int:
    return int(min(cfg.held_out_max, max(cfg.held_out_min, round(cfg.held_out_fraction * n))))


def default_lfw_root() -> Path:
    env = os.environ.get("LEGATO_LFW")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "lfw"


def images_folder(root: str | Path) -> Path:
    root = Path(root)
    folder = root / "images" if (root / "images").is_dir() else root
    if not folder.is_dir():
        raise InputError(f"no LFW photos at {root}: give the folder that holds one sub-folder per person "
                         "(or its parent with images/), e.g. --lfw ../shared/data/lfw")
    return folder


def people(root: str | Path, min_photos: int = 20) -> list[str]:
    """Names of the people with at least `min_photos` photos, sorted (the class index is the position)."""
    folder = images_folder(root)
    names = sorted(p.name for p in folder.iterdir()
                   if p.is_dir() and sum(1 for f in p.iterdir() if f.suffix.lower() == ".jpg") >= min_photos)
    if not names:
        raise InputError(f"{folder} holds no person with at least {min_photos} photos")
    return names


def photo_files(root: str | Path, name: str) -> list[Path]:
    return sorted(f for f in (images_folder(root) / name).iterdir() if f.suffix.lower() == ".jpg")


@dataclass
class FaceSet:
    """Aligned faces `images` `[N, size, size, 3]` uint8, `labels` `[N]`, `held_out` `[N]` bool, `names`."""

    images: np.ndarray
    labels: np.ndarray
    held_out: np.ndarray
    names: list[str]
    files: list[str]

    def tensors(self, held_out: bool):
        """(images `[n, 3, s, s]` in [-1, 1], labels `[n]`) of the train or held-out split."""
        import torch

        keep = self.held_out == held_out
        x = torch.from_numpy(self.images[keep]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return x.contiguous(), torch.from_numpy(self.labels[keep]).long()


def _cache_path(cfg: FaceSetConfig) -> Path:
    return cache_dir() / f"lfw-faces-{cfg.size}-p{cfg.padding:g}-m{cfg.min_photos}.npz"


def prepare(root: str | Path | None = None, cfg: FaceSetConfig = FaceSetConfig(), progress: bool = True,
            cache: bool = True) -> FaceSet:
    """Align every photo of the chosen people with dlib (the face nearest the centre), resize, cache."""
    root = Path(root) if root is not None else default_lfw_root()
    path = _cache_path(cfg)
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return FaceSet(z["images"], z["labels"], z["held_out"], [str(n) for n in z["names"]],
                           [str(f) for f in z["files"]])
    from PIL import Image

    from legato.identity import faces

    dlib = faces.import_dlib()
    names = people(root, cfg.min_photos)
    jobs = [(i, f, k >= len(fs) - held_out_count(len(fs), cfg))
            for i, n in enumerate(names) for fs in [photo_files(root, n)] for k, f in enumerate(fs)]
    from tqdm import tqdm

    images, labels, held, files = [], [], [], []
    for label, f, is_held in tqdm(jobs, desc="aligning LFW faces", disable=not progress, mininterval=5):
        rgb, _ = faces.read_rgb(f)
        # LFW centres each photo on its person; the fixed box is dlib's usual answer there (benchmarks/lfw.py)
        face = faces.find_face(rgb, str(f), "center", upsample=1, cnn_fallback=False,
                               fallback_box=(0.27, 0.3, 0.73, 0.76))
        chip = dlib.get_face_chip(rgb, faces.landmarks5(rgb, face.box), size=150, padding=cfg.padding)
        small = Image.fromarray(chip).resize((cfg.size, cfg.size), Image.LANCZOS)
        images.append(np.asarray(small, dtype=np.uint8))
        labels.append(label)
        held.append(is_held)
        files.append(f"{f.parent.name}/{f.name}")
    out = FaceSet(np.stack(images), np.asarray(labels, np.int64), np.asarray(held, bool), names, files)
    if cache:
        buf = io.BytesIO()
        np.savez(buf, images=out.images, labels=out.labels, held_out=out.held_out, names=np.array(names),
                 files=np.array(files), config=np.array(str(asdict(cfg))))
        atomic_write_bytes(path, buf.getvalue())
    return out
