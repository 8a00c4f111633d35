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


def align_photo(path: str | Path, size: int, framing: str | None) -> torch.Tensor:
    """One photo → `[1, 3, size, size]` in [-1, 1], framed as the generator frames a face.

    `framing="ffhq"`: dlib finds the face (the largest, when there are several) and its 68 landmarks; the eye
    centres, nose tip and mouth corners are moved by a similarity transform to where FFHQ's alignment puts
    them (`identity.align.FFHQ_POINTS`), the rest of the frame filled by reflection. Without a face (or
    without dlib) the photo is taken as it is, centre-cropped (`load_image`), with a warning on stderr: an
    image the generator made, or one already aligned, needs nothing more. `framing=None`: `load_image`.
    """
    if framing is None:
        return load_image(path, size)
    if framing != "ffhq":
        raise InputError(f"unknown photo framing {framing!r} (known: ffhq)")
    import sys

    from legato.errors import LegatoError
    from legato.identity import faces
    from legato.identity.align import FFHQ_POINTS, similarity_transform, warp

    rgb, name = faces.read_rgb(path)
    try:
        face = faces.find_face(rgb, name, policy="largest")
        points = faces.arcface_points(rgb, face.box)
    except LegatoError as e:  # no face, or dlib missing
        print(f"warning: {e}; {name} is used as it is framed (centre-cropped), without face alignment",
              file=sys.stderr)
        return load_image(path, size)
    matrix = similarity_transform(points, FFHQ_POINTS * size)
    image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    return warp(image, matrix, size, padding_mode="reflection").clamp(-1, 1)
