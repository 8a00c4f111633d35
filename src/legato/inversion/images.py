"""Reading photos from disk into generator-sized tensors in [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from legato.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """One image file → `[1, 3, size, size]` in [-1, 1] (centre-cropped to a square, then resized)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            im = im.resize((size, size), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1.0


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """`[3, H, W]` or `[1, 3, H, W]` in [-1, 1] → PNG (atomic)."""
    import io

    from PIL import Image

    from legato.files import atomic_write_bytes

    if image.dim() == 4:
        image = image[0]
    arr = ((image.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())

