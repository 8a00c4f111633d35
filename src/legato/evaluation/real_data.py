"""Real images for ΔFID_real when the generator has none of its own (EG3D: the FFHQ images it was trained on).

`--real-images` takes either a folder of images or a statistics file:

- a folder (PNG/JPEG/WebP, read in name order, the first `n`): each image is resized to the generator's
  resolution, its FID features are extracted once and cached (`~/.cache/legato/fid`, or `$LEGATO_CACHE/fid`),
  keyed by the folder's path, the files' names, sizes and modification times, the feature extractor and the
  resolution, so a second run reads the cache instead of the images;
- a `.npz` with `mu` and `sigma` (what `pytorch-fid --save-stats` writes): the statistics of the real set.
  ΔFID_real then has no bootstrap interval (the real features are not there to resample).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from legato.errors import InputError
from legato.tensor_cache import cache_dir as cache_root

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class RealReference:
    """Real features `[N, D]` (float64), or only their mean `[D]` and covariance `[D, D]` from a stats file."""

    source: str
    features: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    sigma: torch.Tensor | None = None
    cached: bool = False

    @property
    def n(self) -> int | None:
        return None if self.features is None else int(self.features.shape[0])


def cache_dir() -> Path:
    return cache_root() / "fid"


def image_files(folder: Path, n: int) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"--real-images {folder}: no images there (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files[:n]


def _key(folder: Path, files: list[Path], extractor_name: str, size: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([str(folder.resolve()), extractor_name, size]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _read(path: Path, size: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"--real-images: cannot read {path} as an image ({e})") from e
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def load_real_reference(path, extractor, n: int, size: int, batch_size: int = 32, progress=None,
                        cache: Path | None = None) -> RealReference:
    """The real set's features (a folder, cached) or statistics (a `.npz`) under `extractor`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"--real-images {path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise InputError(f"--real-images {path}: give a folder of images or a statistics .npz (mu, sigma)")
        try:
            with np.load(path, allow_pickle=False) as data:
                mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
        except (KeyError, ValueError, OSError) as e:
            raise InputError(f"--real-images {path}: not a statistics file with arrays mu and sigma ({e})") from e
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise InputError(f"--real-images {path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
        return RealReference(str(path), mu=torch.from_numpy(mu), sigma=torch.from_numpy(sigma))
    files = image_files(path, n)
    key = _key(path, files, extractor.name, size)
    cache_file = (cache or cache_dir()) / f"{key}.safetensors"
    if cache_file.is_file():
        from safetensors.torch import load_file

        return RealReference(str(path), features=load_file(str(cache_file))["features"], cached=True)
    feats = []
    for i in range(0, len(files), batch_size):
        batch = torch.stack([_read(f, size) for f in files[i:i + batch_size]])
        feats.append(extractor(batch))
        if progress is not None:
            progress()
    features = torch.cat(feats)
    from safetensors.torch import save_file

    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    save_file({"features": features.contiguous()}, str(tmp), metadata={
        "folder": str(path.resolve()), "extractor": extractor.name, "size": str(size), "n": str(len(files))})
    os.replace(tmp, cache_file)  # a half-written cache is never read
    return RealReference(str(path), features=features)


def fid_from_statistics(features: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> float:
    """FID between a feature set `[N, D]` and a real set given by its mean and covariance."""
    from legato.evaluation.fid import fid_from_moments

    f = features.double()
    if f.shape[1] != mu.shape[0]:
        raise InputError(f"the real statistics have {mu.shape[0]} features, the extractor gives {f.shape[1]} "
                         f"(a statistics file must come from the same network, e.g. pytorch-fid's pool3)")
    mu_f = f.mean(0)
    sigma_f = torch.cov(f.t())
    return fid_from_moments(mu_f, sigma_f, mu, sigma)
