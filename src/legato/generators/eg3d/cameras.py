"""EG3D cameras: look-at poses on a sphere, FOV → normalised intrinsics, and the 25-number camera vector.

Conventions follow the released EG3D models (OpenCV camera axes, y up in the world, the camera looking at a
pivot): a camera vector is `cam2world.reshape(16)` followed by `intrinsics.reshape(9)`, with intrinsics
normalised by the image size (principal point at 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Reference camera of the released FFHQ/AFHQ models (EG3D's `gen_samples.py` and its rendering_kwargs).
FFHQ_FOV_DEGREES = 18.837
FFHQ_PIVOT = (0.0, 0.0, 0.2)
FFHQ_RADIUS = 2.7


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / torch.norm(v, dim=-1, keepdim=True)


def cam2world_from_forward(forward: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Camera-to-world matrices `[N, 4, 4]` for cameras at `origin` `[N, 3]` looking along `forward` `[N, 3]`
    (no roll, world y up; the camera's x axis is `-normalize(up × forward)` as in the reference)."""
    forward = _normalize(forward)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=forward.dtype, device=forward.device).expand_as(forward)
    right = -_normalize(torch.cross(up, forward, dim=-1))
    up = _normalize(torch.cross(forward, right, dim=-1))
    n = forward.shape[0]
    rotation = torch.eye(4, dtype=forward.dtype, device=forward.device).repeat(n, 1, 1)
    rotation[:, :3, :3] = torch.stack((right, up, forward), dim=-1)
    translation = torch.eye(4, dtype=forward.dtype, device=forward.device).repeat(n, 1, 1)
    translation[:, :3, 3] = origin
    return translation @ rotation


def look_at_pose(
    yaw: float | torch.Tensor,
    pitch: float | torch.Tensor,
    pivot: tuple[float, float, float] | torch.Tensor = FFHQ_PIVOT,
    radius: float = FFHQ_RADIUS,
    yaw_std: float = 0.0,
    pitch_std: float = 0.0,
    batch_size: int = 1,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Cameras on a sphere of `radius` around `pivot`, looking at it: `[N, 4, 4]` cam2world.

    `yaw` is the azimuth (π/2 = frontal) and `pitch` the polar angle from the y axis (π/2 = level), both
    in radians, as the reference's `LookAtPoseSampler.sample(horizontal_mean, vertical_mean, ...)`; the
    optional standard deviations draw Gaussian jitter (with `generator`).
    """
    yaw_t = torch.as_tensor(yaw, dtype=torch.float32, device=device).reshape(-1, 1)
    pitch_t = torch.as_tensor(pitch, dtype=torch.float32, device=device).reshape(-1, 1)
    n = max(batch_size, yaw_t.shape[0], pitch_t.shape[0])
    h = torch.randn((n, 1), generator=generator).to(device) * yaw_std + yaw_t
    v = torch.randn((n, 1), generator=generator).to(device) * pitch_std + pitch_t
    v = torch.clamp(v, 1e-5, math.pi - 1e-5)
    phi = torch.arccos(1 - 2 * (v / math.pi))
    origin = torch.zeros((n, 3), device=device)
    origin[:, 0:1] = radius * torch.sin(phi) * torch.cos(math.pi - h)
    origin[:, 2:3] = radius * torch.sin(phi) * torch.sin(math.pi - h)
    origin[:, 1:2] = radius * torch.cos(phi)
    pivot_t = torch.as_tensor(pivot, dtype=torch.float32, device=device)
    return cam2world_from_forward(_normalize(pivot_t - origin), origin)


def fov_to_intrinsics(fov_degrees: float = FFHQ_FOV_DEGREES, device: str | torch.device = "cpu") -> torch.Tensor:
    """Normalised intrinsics `[3, 3]` for a field of view in degrees (principal point at the image centre).

    The constants (3.14159 and 1.414) are the reference's, so cameras match the released models exactly.
    """
    focal = float(1 / (math.tan(fov_degrees * 3.14159 / 360) * 1.414))
    return torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], dtype=torch.float32, device=device)


def camera_vector(cam2world: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """`[N, 4, 4]` cam2world + `[3, 3]` or `[N, 3, 3]` intrinsics → `[N, 25]` camera vectors."""
    n = cam2world.shape[0]
    intrinsics = intrinsics.reshape(-1, 9).expand(n, 9)
    return torch.cat([cam2world.reshape(n, 16), intrinsics.to(cam2world)], dim=1)


def split_camera(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`[N, 25]` → cam2world `[N, 4, 4]`, intrinsics `[N, 3, 3]`."""
    return c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3)


@dataclass
class CameraRig:
    """Where the cameras of a model sit: its pivot, orbit radius and field of view (FFHQ defaults)."""

    pivot: tuple[float, float, float] = FFHQ_PIVOT
    radius: float = FFHQ_RADIUS
    fov_degrees: float = FFHQ_FOV_DEGREES

    @classmethod
    def from_rendering_kwargs(cls, rendering_kwargs: dict) -> CameraRig:
        pivot = rendering_kwargs.get("avg_camera_pivot", [0, 0, 0])
        return cls(pivot=tuple(float(p) for p in pivot), radius=float(rendering_kwargs.get("avg_camera_radius", 2.7)))

    def camera(self, yaw: float | torch.Tensor = 0.0, pitch: float | torch.Tensor = 0.0,
               device: str | torch.device = "cpu") -> torch.Tensor:
        """Camera vectors `[N, 25]` at yaw/pitch offsets (radians) from the frontal view."""
        pose = look_at_pose(math.pi / 2 + torch.as_tensor(yaw, dtype=torch.float32),
                            math.pi / 2 + torch.as_tensor(pitch, dtype=torch.float32),
                            self.pivot, self.radius, device=device)
        return camera_vector(pose, fov_to_intrinsics(self.fov_degrees, device=device))

    def conditioning(self, n: int = 1, device: str | torch.device = "cpu") -> torch.Tensor:
        """The frontal camera the mapping network is conditioned on, `[n, 25]` (as the reference's samplers)."""
        return self.camera(0.0, 0.0, device=device).expand(n, -1).clone()

    def views(self, n: int, yaw_range: float = math.pi / 12, pitch: float = -0.2,
              device: str | torch.device = "cpu") -> torch.Tensor:
        """`n` evaluation cameras `[n, 25]`: yaws evenly in ±`yaw_range` at `pitch` (n = 1: yaw 0)."""
        yaws = torch.linspace(-yaw_range, yaw_range, n) if n > 1 else torch.zeros(1)
        pitches = torch.full_like(yaws, pitch)
        return self.camera(yaws, pitches, device=device)
