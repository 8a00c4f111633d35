"""Photos of SynthFaces people: a person is an identity seed, a photo adds random nuisance and camera.

Identity seeds ≥ `HELD_OUT_SEED` are reserved for evaluation: every model of this world trains on
identities drawn at random from `random_identity` (not from seeds), and checks use seeds ≥ 1_000_000, so
the people they are measured on were never seen in training.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from legato.errors import InputError
from legato.files import atomic_write_bytes
from legato.synthfaces.params import (
    MAX_YAW,
    N_IDENTITY,
    identity_from_seed,
    random_camera,
    random_nuisance,
)
from legato.synthfaces.renderer import render

HELD_OUT_SEED = 1_000_000  # identity seeds from here on are held-out people (evaluation only)


def photo_generator(identity_seed: int, seed: int) -> torch.Generator:
    """The random generator behind `photos(identity_seed, n, seed)` (nuisance first, then camera)."""
    mixed = (int(identity_seed) * 1_000_003 + int(seed) * 7919 + 12345) % (2**62)
    return torch.Generator().manual_seed(mixed)


def _check_n(n: int) -> None:
    if int(n) < 1:
        raise InputError(f"the number of photos must be at least 1, got {n}")


def photos(identity_seed: int, n: int, seed: int = 0, size: int = 64) -> torch.Tensor:
    """`n` photos `[n, 3, size, size]` in [-1, 1] of person `identity_seed` (random nuisance and camera)."""
    _check_n(n)
    g = photo_generator(identity_seed, seed)
    ident = identity_from_seed(identity_seed).expand(n, N_IDENTITY)
    return render(ident, random_nuisance(n, g), random_camera(n, g), size=size)


def out_of_domain_identity(identity_seed: int, n_pushed: int = 5) -> torch.Tensor:
    """Identity `[21]` of person `identity_seed` with `n_pushed` parameters moved 0.25–0.7 outside [0, 1].

    Which parameters and which way is fixed by the seed, so the same seed is the same out-of-domain person.
    """
    base = identity_from_seed(identity_seed).clone()
    g = torch.Generator().manual_seed(int(identity_seed) * 31 + 7_777_777)
    idx = torch.randperm(N_IDENTITY, generator=g)[:n_pushed]
    up = torch.rand(n_pushed, generator=g) < 0.5
    amount = 0.25 + 0.45 * torch.rand(n_pushed, generator=g)
    base[idx] = torch.where(up, 1.0 + amount, -amount)
    return base


def out_of_domain_photos(identity_seed: int, n: int, seed: int = 0, size: int = 64) -> torch.Tensor:
    """Like `photos`, for a person whose identity lies partly outside the training ranges."""
    _check_n(n)
    g = photo_generator(identity_seed, seed + 104_729)
    ident = out_of_domain_identity(identity_seed).expand(n, N_IDENTITY)
    return render(ident, random_nuisance(n, g), random_camera(n, g), size=size)


def grid_cameras(n_views: int, max_yaw: float = MAX_YAW) -> torch.Tensor:
    """`n_views` cameras `[n, 2]` with yaws evenly in ±max_yaw at pitch 0."""
    if n_views == 1:
        return torch.zeros(1, 2)
    return torch.stack([torch.linspace(-max_yaw, max_yaw, n_views), torch.zeros(n_views)], 1)


def identity_grid(identity_seeds: list[int], n_views: int, seed: int = 0, size: int = 64) -> torch.Tensor:
    """Each person (one nuisance per row) seen from `n_views` yaws in ±30°: `[len(seeds), n_views, 3, s, s]`.
    """
    if not identity_seeds or n_views < 1:
        raise InputError("a grid needs at least one identity and one view")
    rows = []
    cams = grid_cameras(n_views)
    for s in identity_seeds:
        nui = random_nuisance(1, photo_generator(s, seed)).expand(n_views, -1)
        rows.append(render(identity_from_seed(s).expand(n_views, N_IDENTITY), nui, cams, size=size))
    return torch.stack(rows)


def save_grid(images: torch.Tensor, path: str | Path, ncol: int | None = None, scale: int = 2) -> Path:
    """Write images (`[R, C, 3, H, W]`, or `[N, 3, H, W]` with `ncol`) in [-1, 1] as one PNG grid."""
    from PIL import Image

    if images.ndim == 4:
        ncol = ncol or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
        n = images.shape[0]
        nrow = (n + ncol - 1) // ncol
        pad = torch.full((nrow * ncol - n, *images.shape[1:]), -1.0)
        images = torch.cat([images.detach().cpu().float(), pad]).view(nrow, ncol, *images.shape[1:])
    if images.ndim != 5 or images.shape[2] != 3:
        raise InputError(
            f"save_grid expects [R, C, 3, H, W] or [N, 3, H, W] images, got {tuple(images.shape)}"
        )
    r, c, _, h, w = images.shape
    x = ((images.detach().cpu().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    x = x.permute(0, 3, 1, 4, 2).reshape(r * h, c * w, 3).numpy()
    pic = Image.fromarray(x)
    if scale > 1:
        pic = pic.resize((c * w * scale, r * h * scale), Image.NEAREST)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
