"""Tri-plane sampling and volume rendering with coarse + importance (fine) samples along each ray.

Numerics follow the released EG3D renderer (MipNeRF-style marcher: midpoint colours/densities, softplus
density with a −1 bias, stratified coarse depths, importance depths from smoothed coarse weights).
Random draws (depth jitter, importance positions) use `torch.rand` with an optional generator and are
drawn for all rays before any chunking, so a chunked render equals an unchunked one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from legato.errors import InputError
from legato.generators.eg3d.rays import ray_box_limits


@dataclass
class RenderingOptions:
    """Volume-rendering settings; defaults are the released FFHQ/AFHQ models' (EG3D train.py, cfg=ffhq)."""

    depth_resolution: int = 48  # uniform (coarse) samples per ray
    depth_resolution_importance: int = 48  # importance (fine) samples per ray
    ray_start: float | str = 2.25  # near bound, or "auto" (with ray_end) to clip rays to the box
    ray_end: float | str = 3.3
    box_warp: float = 1.0  # side of the cube the tri-planes span
    disparity_space_sampling: bool = False
    clamp_mode: str = "softplus"
    white_back: bool = False
    density_noise: float = 0.0
    deterministic: bool = False  # no depth jitter and evenly spaced importance samples (not the reference)

    @classmethod
    def from_rendering_kwargs(cls, rendering_kwargs: dict, **overrides) -> RenderingOptions:
        names = {f.name for f in fields(cls)}
        opts = cls(**{**{k: v for k, v in rendering_kwargs.items() if k in names}, **overrides})
        if opts.clamp_mode != "softplus":
            raise InputError(f"EG3D rendering: clamp_mode {opts.clamp_mode!r} is not supported (only 'softplus')")
        return opts


def project_to_planes(coordinates: torch.Tensor) -> torch.Tensor:
    """Points `[N, M, 3]` → 2D coordinates on the three planes `[N, 3, M, 2]`.

    The released models use the planes (x, y), (x, z) and (z, x) — the reference projects with the inverse
    of its plane-axis matrices, which gives these pairs; trained weights depend on it.
    """
    x, y, z = coordinates.unbind(-1)
    return torch.stack([torch.stack([x, y], -1), torch.stack([x, z], -1), torch.stack([z, x], -1)], dim=1)


def sample_triplanes(planes: torch.Tensor, coordinates: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Bilinear features of tri-planes `[N, 3, C, H, W]` at points `[N, M, 3]` → `[N, 3, M, C]`
    (zero outside the box of side `box_warp`)."""
    n, n_planes, c, h, w = planes.shape
    m = coordinates.shape[1]
    grid = project_to_planes((2 / box_warp) * coordinates).reshape(n * n_planes, 1, m, 2)
    out = F.grid_sample(planes.reshape(n * n_planes, c, h, w), grid.float(), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.permute(0, 3, 2, 1).reshape(n, n_planes, m, c)


def march(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor, white_back: bool = False):
    """Composite samples along rays: colours `[N, R, S, C]`, densities and depths `[N, R, S, 1]` →
    rgb `[N, R, C]` in [-1, 1], depth `[N, R, 1]` (unclamped; NaN where no weight → inf) and the interval
    weights `[N, R, S-1, 1]`."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    densities_mid = F.softplus(densities_mid - 1)  # activation bias of −1, as trained
    alpha = 1 - torch.exp(-(densities_mid * deltas))
    transmit = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
    weights = alpha * torch.cumprod(transmit, -2)[:, :, :-1]
    rgb = torch.sum(weights * colors_mid, -2)
    weight_total = weights.sum(2)
    depth = torch.nan_to_num(torch.sum(weights * depths_mid, -2) / weight_total, float("inf"))
    if white_back:
        rgb = rgb + 1 - weight_total
    return rgb * 2 - 1, depth, weights


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, u: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Inverse-CDF samples: bins `[R, S+2]`, weights `[R, S]`, uniforms `u` `[R, K]` → positions `[R, K]`."""
    n_bins = weights.shape[1]
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)
    u = u.contiguous()
    inds = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp_min(inds - 1, 0)
    above = torch.clamp_max(inds, n_bins)
    k = u.shape[1]
    pairs = torch.stack([below, above], -1).view(-1, 2 * k)
    cdf_g = torch.gather(cdf, 1, pairs).view(-1, k, 2)
    bins_g = torch.gather(bins, 1, pairs).view(-1, k, 2)
    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])


def importance_depths(depths: torch.Tensor, weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Fine depths `[N, R, K, 1]` from coarse depths `[N, R, S, 1]`, their weights `[N, R, S-1, 1]` and
    uniforms `u` `[N*R, K]` (weights smoothed by a 2-tap max then a 2-tap mean, plus 0.01)."""
    with torch.no_grad():
        n, r, s, _ = depths.shape
        z = depths.reshape(n * r, s)
        w = weights.reshape(n * r, -1)
        w = F.max_pool1d(w.unsqueeze(1).float(), 2, 1, padding=1)
        w = F.avg_pool1d(w, 2, 1).squeeze(1) + 0.01
        z_mid = 0.5 * (z[:, :-1] + z[:, 1:])
        return sample_pdf(z_mid, w[:, 1:-1], u).detach().reshape(n, r, u.shape[1], 1)


class ImportanceRenderer(nn.Module):
    """Renders tri-planes along rays with a decoder `(features [N, 3, M, C], dirs [N, M, 3]) → {rgb, sigma}`.

    `ray_chunk` (rays per pass, None = all) bounds the memory of one pass; results do not depend on it.
    `checkpoint=True` (when gradients are on) stores only each chunk's inputs and recomputes its samples in
    the backward pass: much less memory for training, about one more forward pass of time.
    """

    def __init__(self, ray_chunk: int | None = None, checkpoint: bool = False) -> None:
        super().__init__()
        self.ray_chunk = ray_chunk
        self.checkpoint = checkpoint

    def run_model(self, planes, decoder, coordinates, directions, options: RenderingOptions,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        features = sample_triplanes(planes, coordinates, options.box_warp)
        out = decoder(features, directions)
        if options.density_noise > 0:
            noise = torch.randn(out["sigma"].shape, generator=generator, device=out["sigma"].device)
            out["sigma"] = out["sigma"] + noise * options.density_noise
        return out

    def _coarse_depths(self, origins, directions, options, generator):
        n, m, _ = origins.shape
        d = options.depth_resolution
        device = origins.device
        if options.ray_start == options.ray_end == "auto":
            start, end = ray_box_limits(origins, directions, options.box_warp)
            valid = end > start
            if torch.any(valid).item():
                start[~valid] = start[valid].min()
                end[~valid] = start[valid].max()
            steps = torch.arange(d, dtype=torch.float32, device=device) / (d - 1)
            depths = (start[None] + steps.reshape(-1, 1, 1, 1) * (end - start)[None]).permute(1, 2, 0, 3)
            delta = ((end - start) / (d - 1))[..., None]
            # the reference draws this jitter in the depth-major memory layout of `depths`
            return depths + self._rand((d, n, m, 1), generator, device, options).permute(1, 2, 0, 3) * delta
        elif options.disparity_space_sampling:
            t = torch.linspace(0, 1, d, device=device).reshape(1, 1, d, 1).repeat(n, m, 1, 1)
            jitter = self._rand(t.shape, generator, device, options)
            t = t + jitter * (1 / (d - 1))
            return 1.0 / (1.0 / options.ray_start * (1.0 - t) + 1.0 / options.ray_end * t)
        else:
            start, end = float(options.ray_start), float(options.ray_end)
            depths = torch.linspace(start, end, d, device=device).reshape(1, 1, d, 1).repeat(n, m, 1, 1)
            delta = (end - start) / (d - 1)
        return depths + self._rand(depths.shape, generator, device, options) * delta

    @staticmethod
    def _rand(shape, generator, device, options) -> torch.Tensor:
        if options.deterministic:
            return torch.full(shape, 0.5, device=device)
        return torch.rand(shape, generator=generator, device=device)

    def forward(self, planes: torch.Tensor, decoder: nn.Module, origins: torch.Tensor, directions: torch.Tensor,
                options: RenderingOptions, generator: torch.Generator | None = None):
        """planes `[N, 3, C, H, W]`, rays `[N, M, 3]` → features `[N, M, C']`, depth `[N, M, 1]`,
        accumulated weight `[N, M, 1]`."""
        n, m, _ = origins.shape
        depths_coarse = self._coarse_depths(origins, directions, options, generator)
        k = options.depth_resolution_importance
        if k > 0:
            if options.deterministic:
                u = torch.linspace(0, 1, k, device=origins.device).expand(n * m, k)
            else:
                u = torch.rand((n * m, k), generator=generator, device=origins.device)
            u = u.reshape(n, m, k)
        chunk = m if not self.ray_chunk else int(self.ray_chunk)
        use_checkpoint = self.checkpoint and torch.is_grad_enabled() and options.density_noise == 0
        rgbs, depths, weights, lo, hi = [], [], [], [], []
        for a in range(0, m, chunk):
            sl = slice(a, min(a + chunk, m))
            args = (planes, origins[:, sl], directions[:, sl], depths_coarse[:, sl], u[:, sl] if k > 0 else None)
            if use_checkpoint:  # keep only the chunk's inputs; recompute its samples in the backward pass
                out = checkpoint(self._render_chunk, decoder, options, generator, *args, use_reentrant=False)
            else:
                out = self._render_chunk(decoder, options, generator, *args)
            for acc, value in zip((rgbs, depths, weights, lo, hi), out, strict=True):
                acc.append(value)
        depth = torch.clamp(torch.cat(depths, 1), torch.stack(lo).min(), torch.stack(hi).max())
        return torch.cat(rgbs, 1), depth, torch.cat(weights, 1)

    def _render_chunk(self, decoder, options, generator, planes, o, d, z, u):
        """Coarse pass, importance samples, fine pass and compositing for the rays `o`, `d` `[N, R, 3]`."""
        n, r, s = o.shape[0], o.shape[1], z.shape[2]
        coords = (o.unsqueeze(-2) + z * d.unsqueeze(-2)).reshape(n, -1, 3)
        dirs = d.unsqueeze(-2).expand(-1, -1, s, -1).reshape(n, -1, 3)
        out = self.run_model(planes, decoder, coords, dirs, options, generator)
        colors = out["rgb"].reshape(n, r, s, -1)
        dens = out["sigma"].reshape(n, r, s, 1)
        if u is not None:
            k = u.shape[-1]
            _, _, w = march(colors, dens, z, options.white_back)
            z_fine = importance_depths(z, w, u.reshape(n * r, k))
            coords = (o.unsqueeze(-2) + z_fine * d.unsqueeze(-2)).reshape(n, -1, 3)
            dirs = d.unsqueeze(-2).expand(-1, -1, k, -1).reshape(n, -1, 3)
            out = self.run_model(planes, decoder, coords, dirs, options, generator)
            z, colors, dens = _merge(z, colors, dens, z_fine, out["rgb"].reshape(n, r, k, -1),
                                     out["sigma"].reshape(n, r, k, 1))
        rgb, depth, w = march(colors, dens, z, options.white_back)
        return rgb, depth, w.sum(2), z.min(), z.max()


def _merge(depths1, colors1, dens1, depths2, colors2, dens2):
    """Concatenate two sample sets along each ray and sort them by depth."""
    depths = torch.cat([depths1, depths2], dim=-2)
    colors = torch.cat([colors1, colors2], dim=-2)
    dens = torch.cat([dens1, dens2], dim=-2)
    _, idx = torch.sort(depths, dim=-2)
    depths = torch.gather(depths, -2, idx)
    colors = torch.gather(colors, -2, idx.expand(-1, -1, -1, colors.shape[-1]))
    dens = torch.gather(dens, -2, idx.expand(-1, -1, -1, 1))
    return depths, colors, dens
