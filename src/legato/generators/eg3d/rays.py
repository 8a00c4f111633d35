"""Rays through the pixels of a normalised pinhole camera, and where they cross the tri-plane box."""

from __future__ import annotations

import torch


def sample_rays(cam2world: torch.Tensor, intrinsics: torch.Tensor,
                resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One ray per pixel centre of a `resolution`² image.

    cam2world `[N, 4, 4]` (OpenCV axes), intrinsics `[N, 3, 3]` normalised by the image size →
    origins `[N, M, 3]` and unit directions `[N, M, 3]` with `M = resolution²`, row-major pixel order.
    """
    n, m = cam2world.shape[0], resolution**2
    device = cam2world.device
    origin = cam2world[:, :3, 3]
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    skew = intrinsics[:, 0, 1, None]

    ticks = torch.arange(resolution, dtype=torch.float32, device=device)
    rows, cols = torch.meshgrid(ticks, ticks, indexing="ij")
    u = (cols * (1.0 / resolution) + (0.5 / resolution)).reshape(1, -1).expand(n, m)
    v = (rows * (1.0 / resolution) + (0.5 / resolution)).reshape(1, -1).expand(n, m)
    z = torch.ones((n, m), device=device)

    x_lift = (u - cx + cy * skew / fy - skew * v / fy) / fx * z
    y_lift = (v - cy) / fy * z
    points_cam = torch.stack((x_lift, y_lift, z, torch.ones_like(z)), dim=-1)
    points_world = torch.bmm(cam2world, points_cam.permute(0, 2, 1)).permute(0, 2, 1)[:, :, :3]
    directions = torch.nn.functional.normalize(points_world - origin[:, None, :], dim=2)
    origins = origin.unsqueeze(1).repeat(1, m, 1)
    return origins, directions


def ray_box_limits(origins: torch.Tensor, directions: torch.Tensor,
                   box_side: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances `[..., 1]` of rays through the axis-aligned cube of side `box_side` centred
    at the origin (slab method); rays that miss get start −1 and end −2."""
    shape = origins.shape
    o = origins.detach().reshape(-1, 3)
    d = directions.detach().reshape(-1, 3)
    half = box_side / 2
    bounds = torch.tensor([[-half] * 3, [half] * 3], dtype=o.dtype, device=o.device)
    valid = torch.ones(o.shape[:-1], dtype=torch.bool, device=o.device)
    inv = 1 / d
    sign = (inv < 0).long()

    def slab(axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo = (bounds.index_select(0, sign[..., axis])[..., axis] - o[..., axis]) * inv[..., axis]
        hi = (bounds.index_select(0, 1 - sign[..., axis])[..., axis] - o[..., axis]) * inv[..., axis]
        return lo, hi

    tmin, tmax = slab(0)
    tymin, tymax = slab(1)
    valid[torch.logical_or(tmin > tymax, tymin > tmax)] = False
    tmin, tmax = torch.max(tmin, tymin), torch.min(tmax, tymax)
    tzmin, tzmax = slab(2)
    valid[torch.logical_or(tmin > tzmax, tzmin > tmax)] = False
    tmin, tmax = torch.max(tmin, tzmin), torch.min(tmax, tzmax)
    tmin[~valid] = -1
    tmax[~valid] = -2
    return tmin.reshape(*shape[:-1], 1), tmax.reshape(*shape[:-1], 1)
