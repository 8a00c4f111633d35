"""Image grids as PNG files: `save_grid`, `before_after_grid`, and a labelled strip."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from legato.errors import InputError
from legato.files import atomic_write_bytes


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """`[N, 3, H, W]` floats in [-1, 1] → `[N, H, W, 3]` uint8 (values outside [-1, 1] are clipped)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images must be a [N, 3, H, W] tensor in [-1, 1], got {shape}")
    x = images.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def grid_array(images: torch.Tensor, nrow: int, padding: int = 2, fill: int = 255) -> np.ndarray:
    """Tile `images` into rows of `nrow`, `padding` pixels of `fill` between and around tiles."""
    pix = to_uint8(images)
    n, h, w, _ = pix.shape
    nrow = max(1, min(int(nrow), n))
    rows = -(-n // nrow)
    out = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, 3), fill, np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        out[y:y + h, x:x + w] = pix[i]
    return out


def _write_png(array: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    import io

    path = Path(path)
    img = Image.fromarray(array)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _scale_for(height: int) -> int:
    """Small generators (SynthFaces: 64 px) are enlarged so a face is visible; big ones are left alone."""
    return max(1, 128 // max(height, 1))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, padding: int = 2) -> Path:
    """Write `images` `[N, 3, H, W]` in [-1, 1] as one PNG grid, `nrow` images per row."""
    if images.shape[0] == 0:
        raise InputError("save_grid got no images")
    return _write_png(grid_array(images, nrow, padding), path, scale=_scale_for(images.shape[-2]))


@torch.no_grad()
def before_after_grid(source, unlearned, ws: torch.Tensor, views: torch.Tensor, path: str | Path) -> Path:
    """Rows: source images of each latent in `ws` across `views`, then the unlearned ones (same order)."""
    device = source.w_avg.device
    ws, views = ws.to(device), views.to(device)
    b, v = ws.shape[0], views.shape[0]
    w, c = ws.repeat_interleave(v, dim=0), views.repeat(b, 1)
    images = torch.cat([source.synthesis(w, c), unlearned.synthesis(w, c)])
    return save_grid(images, path, nrow=v)


def save_labelled_strip(images: torch.Tensor, labels: Sequence[str], path: str | Path) -> Path:
    """One row of images with a text label under each (e.g. the strength)."""
    if len(labels) != images.shape[0]:
        raise InputError(f"{images.shape[0]} images but {len(labels)} labels")
    scale = _scale_for(images.shape[-2])
    strip = Image.fromarray(grid_array(images, nrow=images.shape[0]))
    strip = strip.resize((strip.width * scale, strip.height * scale), Image.NEAREST)
    band = max(18, strip.height // 5)
    canvas = Image.new("RGB", (strip.width, strip.height + band), (255, 255, 255))
    canvas.paste(strip, (0, 0))
    draw = ImageDraw.Draw(canvas)
    try:  # a scalable font sized to the tiles (Pillow ≥ 10.1); else the small bitmap default
        font = ImageFont.load_default(size=max(10, int(band * 0.6)))
    except TypeError:
        font = ImageFont.load_default()
    tile = (strip.width - 2 * scale) / images.shape[0]
    for i, label in enumerate(labels):
        x0, x1, _, y1 = draw.textbbox((0, 0), label, font=font)
        x = 2 * scale + i * tile + (tile - 2 * scale - (x1 - x0)) / 2 - x0  # centred under the image
        draw.text((x, strip.height + (band - y1) / 2), label, fill=(0, 0, 0), font=font)
    return _write_png(np.asarray(canvas), path)
