"""The parameters of the SynthFaces world: who a person is, how a photo varies, and the camera.

A person is a vector of identity parameters, a photo adds nuisance parameters and a camera. In-domain
parameters lie in [0, 1]; the renderer also accepts values outside (out-of-domain people). The generator's
latent z ~ N(0, I) maps to parameters by the fixed transform p = Φ(z) (the standard normal CDF), so
sampling the generator samples the world.
"""

from __future__ import annotations

import math

import torch

# Identity: fixed for a person; each must be visibly distinct at 64×64.
IDENTITY_PARAMS = (
    "head_width",
    "head_height",
    "jaw_width",
    "skin_lightness",
    "skin_warmth",
    "hair_hue",
    "hair_lightness",
    "hair_length",
    "hair_fringe",
    "eye_spacing",
    "eye_size",
    "eye_color",
    "brow_thickness",
    "brow_tilt",
    "nose_length",
    "nose_width",
    "mouth_width",
    "lip_fullness",
    "ear_size",
    "facial_hair",
    "glasses",
)

# Nuisance: varies between photos of the same person.
NUISANCE_PARAMS = (
    "smile",
    "eye_openness",
    "light_azimuth",
    "light_intensity",
    "background_hue",
    "background_lightness",
    "hair_jitter",
)

N_IDENTITY = len(IDENTITY_PARAMS)
N_NUISANCE = len(NUISANCE_PARAMS)
N_PARAMS = N_IDENTITY + N_NUISANCE
Z_DIM = N_PARAMS  # the generator's z has one coordinate per world parameter

# Camera c = (yaw, pitch) in radians. Photos: yaw within ±30°, pitch within ±0.15.
C_DIM = 2
MAX_YAW = math.radians(30.0)
MAX_PITCH = 0.15
# Evaluation views: yaws evenly in ±π/12 at pitch 0 (the reference evaluates EG3D over ±π/12).
VIEW_YAW = math.pi / 12


def z_to_params(z: torch.Tensor) -> torch.Tensor:
    """The fixed transform z `[B, Z_DIM]` → parameters `[B, N_PARAMS]` in (0, 1)."""
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def params_to_z(p: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Inverse of `z_to_params` (parameters are clamped into (0, 1) first)."""
    p = p.clamp(eps, 1.0 - eps)
    return math.sqrt(2.0) * torch.erfinv(2.0 * p - 1.0)


def split(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameters `[B, N_PARAMS]` → (identity `[B, N_IDENTITY]`, nuisance `[B, N_NUISANCE]`)."""
    return p[:, :N_IDENTITY], p[:, N_IDENTITY:]


def random_identity(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`n` in-domain identities `[n, N_IDENTITY]` in (0, 1), distributed as Φ(z) for z ~ N(0, I)."""
    return (
        0.5 * (1.0 + torch.erf(torch.randn(n, N_IDENTITY, generator=generator) / math.sqrt(2.0))))


def random_nuisance(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`n` nuisance vectors `[n, N_NUISANCE]` in (0, 1), distributed as Φ(z)."""
    return 0.5 * (1.0 + torch.erf(torch.randn(n, N_NUISANCE, generator=generator) / math.sqrt(2.0)))


def random_camera(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`n` cameras `[n, 2]` (yaw, pitch), uniform within the photo ranges."""
    u = torch.rand(n, 2, generator=generator) * 2.0 - 1.0
    return torch.stack([u[:, 0] * MAX_YAW, u[:, 1] * MAX_PITCH], dim=1)


def views(n: int) -> torch.Tensor:
    """`n` evaluation cameras `[n, 2]`: yaws evenly in ±π/12 at pitch 0 (the front view alone for n = 1)."""
    if n == 1:
        return torch.zeros(1, 2)
    yaw = torch.linspace(-VIEW_YAW, VIEW_YAW, n)
    return torch.stack([yaw, torch.zeros(n)], dim=1)


def identity_from_seed(seed: int) -> torch.Tensor:
    """The identity parameters `[N_IDENTITY]` of person number `seed` (deterministic)."""
    g = torch.Generator().manual_seed(int(seed))
    return random_identity(1, generator=g)[0]
