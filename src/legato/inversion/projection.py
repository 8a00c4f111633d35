"""Optimisation-based projection of photos into a generator's W or W+ space, and the learned-encoder entry
point. Both give what `Generator.inverter()` must return: `inverter(images) -> ws` and
`inverter.refine(images, ws, steps) -> ws`.

The schedule follows the StyleGAN2-ADA projector (start at w_avg, Adam, learning rate with a short warm-up
and a cosine ramp-down, Gaussian noise on w scaled by the spread of W that decays over the first 75% of the
steps). The loss is a weighted sum of a perceptual distance (LPIPS with the VGG backbone when the `lpips`
package and its weights are on disk, otherwise an offline pyramid distance), an identity term (1 − cos of
the identity model's embeddings, when one is given) and a pixel MSE.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from legato.errors import InputError


@dataclass
class ProjectionConfig:
    """Defaults follow the StyleGAN2-ADA / EG3D projectors (lr 0.01 → ramp-down over the last 25%, warm-up
    5%, noise 0.05·σ_W decaying over 75% of the steps, 10,000 samples for w_avg/σ_W)."""

    steps: int = 300
    space: str = "w+"  # "w" (one w for every layer) or "w+" (one per layer)
    lr: float = 0.01
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    noise_factor: float = 0.05
    noise_ramp: float = 0.75
    w_samples: int = 10_000
    loss_resolution: int = 256  # images are compared at most at this size
    lambda_perceptual: float = 1.0
    lambda_identity: float = 0.1
    lambda_pixel: float = 0.1
    perceptual: str = "auto"  # "auto" | "lpips" | "pyramid"
    # NVIDIA's projector also optimises StyleGAN2's per-layer noise maps (`noise_const` buffers) beside w,
    # from fresh Gaussian noise, held to noise by a multi-scale autocorrelation penalty and renormalised
    # every step. Here the model's own maps are put back afterwards (the generator stays unchanged; the run
    # renders the latent with them), so maps that took over detail leave the latent short of it: off by
    # default (docs/reference/nvlabs-pickles.md has the measurement). Ignored for generators without noise maps.
    optimize_noise: bool = False
    lambda_noise: float = 1e5
    seed: int = 0

    def validate(self) -> None:
        if self.space not in ("w", "w+"):
            raise InputError(f"projection space must be 'w' or 'w+', not {self.space!r}")
        if self.steps < 0:
            raise InputError("projection steps must be ≥ 0")


class PyramidDistance(nn.Module):
    """Offline perceptual stand-in with no learned weights: L1 on pixels and on horizontal/vertical
    differences (edges) over a 4-level image pyramid."""

    name = "pyramid"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(())
        for _ in range(4):
            d = a - b
            total = total + d.abs().mean()
            total = total + (d[..., 1:, :] - d[..., :-1, :]).abs().mean() + (d[..., 1:] - d[..., :-1]).abs().mean()
            if min(a.shape[-2:]) < 16:
                break
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        return total


class _LPIPS(nn.Module):
    name = "lpips"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(a, b).mean()


def perceptual_distance(choice: str = "auto") -> nn.Module:
    """LPIPS (VGG) when the `lpips` package and its backbone weights are already on disk, else the offline
    pyramid distance (`choice="auto"`). Nothing is downloaded."""
    if choice not in ("auto", "lpips", "pyramid"):
        raise InputError(f"unknown perceptual distance {choice!r}; choose auto, lpips or pyramid")
    if choice != "pyramid":
        net = None
        try:
            import lpips

            hub = os.path.join(torch.hub.get_dir(), "checkpoints")
            if os.path.isdir(hub) and any(n.startswith("vgg16") for n in os.listdir(hub)):
                net = lpips.LPIPS(net="vgg", verbose=False)
        except Exception:
            net = None
        if net is not None:
            return _LPIPS(net).eval().requires_grad_(False)
        if choice == "lpips":
            raise InputError("LPIPS needs the `lpips` package and the VGG16 weights in torch's hub cache; "
                             "use perceptual='auto' to fall back to the offline distance")
    return PyramidDistance()


def _lr_at(t: float, cfg: ProjectionConfig) -> float:
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown) if cfg.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if cfg.lr_rampup > 0:
        ramp = ramp * min(1.0, t / cfg.lr_rampup)
    return cfg.lr * ramp


def _noise_buffers(generator: nn.Module) -> dict[tuple[nn.Module, str], torch.Tensor]:
    """The per-layer noise maps of a StyleGAN2-style synthesis network (buffers named `noise_const`)."""
    found = {}
    for module in generator.modules():
        buf = module._buffers.get("noise_const")
        if buf is not None:
            found[(module, "noise_const")] = buf
    return found


def noise_regularisation(maps: list[torch.Tensor]) -> torch.Tensor:
    """The StyleGAN2 projector's penalty on noise maps that carry structure: the squared autocorrelation
    with a one-pixel shift, down and across, at every scale of the map's pyramid down to 8²."""
    total = maps[0].new_zeros(())
    for m in maps:
        x = m[None, None] if m.dim() == 2 else m
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean().square()
            total = total + (x * torch.roll(x, 1, dims=2)).mean().square()
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


class Projector:
    """Finds ws with `generator.synthesis(ws, camera) ≈ images`.

    generator: a `legato.generators.Generator`; camera: `[c_dim]` or `[B, c_dim]` (default: the generator's
    front camera `views(1)`, or none for 2D generators); identity_model: optional embedder with `.embed`.
    """

    def __init__(self, generator, config: ProjectionConfig | None = None, camera: torch.Tensor | None = None,
                 identity_model: nn.Module | None = None, progress: bool = False) -> None:
        self.generator = generator
        self.config = config or ProjectionConfig()
        self.config.validate()
        self.camera = camera
        self.identity_model = identity_model if getattr(identity_model, "differentiable", True) else None
        self.progress = progress
        self._perceptual: nn.Module | None = None
        self._w_std: float | None = None
        self.history: list[dict] = []

    # helpers -----------------------------------------------------------------------------------
    @property
    def perceptual(self) -> nn.Module:
        if self._perceptual is None:
            self._perceptual = perceptual_distance(self.config.perceptual)
        return self._perceptual

    def _device(self) -> torch.device:
        return self.generator.w_avg.device

    def _cameras(self, n: int) -> torch.Tensor | None:
        cam = self.camera
        if cam is None:
            if getattr(self.generator, "c_dim", 0) == 0:
                return None
            cam = self.generator.views(1)
        cam = cam.to(self._device()).reshape(-1, cam.shape[-1])
        return cam.expand(n, -1) if cam.shape[0] == 1 else cam

    def w_std(self) -> float:
        """Spread of W around w_avg: sqrt(mean ‖w − w_avg‖²) over `config.w_samples` mapped latents."""
        if self._w_std is None:
            g = self.generator
            gen = torch.Generator().manual_seed(self.config.seed + 12345)
            total, count = 0.0, 0
            with torch.no_grad():
                for start in range(0, self.config.w_samples, 1000):
                    n = min(1000, self.config.w_samples - start)
                    z = torch.randn(n, g.z_dim, generator=gen).to(self._device())
                    w = g.mapping(z)[:, 0]
                    total += float(((w - g.w_avg) ** 2).sum())
                    count += n
            self._w_std = math.sqrt(total / max(count, 1))
        return self._w_std

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.loss_resolution
        if x.shape[-1] > r:
            x = F.interpolate(x, size=(r, r), mode="area")
        return x

    # the optimisation ----------------------------------------------------------------------------
    def project(self, images: torch.Tensor, ws_init: torch.Tensor | None = None, steps: int | None = None
                ) -> torch.Tensor:
        """images `[B, 3, H, W]` in [-1, 1] → ws `[B, num_ws, w_dim]` (starting from `ws_init` or w_avg)."""
        cfg, g = self.config, self.generator
        steps = cfg.steps if steps is None else int(steps)
        device = self._device()
        images = images.to(device).float()
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"projection needs images [B, 3, H, W]; got {tuple(images.shape)}")
        b = images.shape[0]
        if ws_init is None:
            ws_init = g.w_avg.detach()[None, None].repeat(b, g.num_ws, 1)
        ws_init = ws_init.detach().to(device).float()
        start = ws_init.mean(1, keepdim=True) if cfg.space == "w" else ws_init
        if steps == 0:
            return ws_init.clone()
        gen = torch.Generator().manual_seed(cfg.seed)
        cams = self._cameras(b)
        target = self._resize(images)
        target_id = None
        if self.identity_model is not None and cfg.lambda_identity > 0:
            with torch.no_grad():
                target_id = self.identity_model.embed(images)
        noise_scale = self.w_std() * cfg.noise_factor if cfg.noise_factor > 0 else 0.0
        noise_maps = _noise_buffers(g) if cfg.optimize_noise else {}
        if noise_maps and b > 1:  # the maps belong to one image: one projection per image, as NVIDIA's
            return torch.cat([self.project(images[i:i + 1], ws_init[i:i + 1], steps) for i in range(b)])
        saved = dict(noise_maps)
        try:
            return self._optimise(images, start, steps, gen, cams, target, target_id, noise_scale, noise_maps)
        finally:  # the model's own noise maps back, whatever happened
            for (module, name), buf in saved.items():
                setattr(module, name, buf)

    def _optimise(self, images, start, steps, gen, cams, target, target_id, noise_scale, noise_maps):
        cfg, g, device = self.config, self.generator, self._device()
        with torch.enable_grad():
            w_opt = start.clone().requires_grad_(True)
            maps = {}
            for (module, name), buf in noise_maps.items():
                fresh = torch.randn(buf.shape, generator=gen).to(buf.device, buf.dtype).requires_grad_(True)
                setattr(module, name, fresh)
                maps[(module, name)] = fresh
            opt = torch.optim.Adam([w_opt, *maps.values()], lr=cfg.lr, betas=(0.9, 0.999))
            bar = _progress(steps, self.progress)
            best, best_loss = w_opt.detach().clone(), float("inf")
            self.history = []
            for step in range(steps):
                t = step / steps
                for group in opt.param_groups:
                    group["lr"] = _lr_at(t, cfg)
                strength = noise_scale * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2 if cfg.noise_ramp > 0 else 0.0
                noisy = w_opt + torch.randn(w_opt.shape, generator=gen).to(device) * strength
                ws = noisy.expand(-1, g.num_ws, -1) if cfg.space == "w" else noisy
                synth = g.synthesis(ws, cams)
                loss, parts = self._loss(synth, images, target, target_id)
                if maps:
                    reg = noise_regularisation(list(maps.values()))
                    parts["noise"] = reg.item()
                    loss = loss + cfg.lambda_noise * reg
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():  # each map back to zero mean, unit variance
                    for m in maps.values():
                        m -= m.mean()
                        m *= m.square().mean().rsqrt()
                if loss.item() < best_loss:  # keep the best iterate (noise makes the last one jittery)
                    best_loss, best = loss.item(), w_opt.detach().clone()
                self.history.append({"step": step, "loss": loss.item(), **parts})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
            if bar is not None:
                bar.close()
        best = best.expand(-1, g.num_ws, -1) if cfg.space == "w" else best
        return best.detach().clone()

    def _loss(self, synth, images, target, target_id):
        """The image terms (the noise maps' penalty is added by `_optimise`)."""
        cfg = self.config
        synth_small = self._resize(synth)
        if synth_small.shape[-1] != target.shape[-1]:
            synth_small = F.interpolate(synth_small, size=target.shape[-2:], mode="bilinear", align_corners=False)
        parts = {}
        loss = synth.new_zeros(())
        if cfg.lambda_perceptual > 0:
            p = self.perceptual(synth_small, target)
            parts["perceptual"] = p.item()
            loss = loss + cfg.lambda_perceptual * p
        if cfg.lambda_pixel > 0:
            px = F.mse_loss(synth_small, target)
            parts["pixel"] = px.item()
            loss = loss + cfg.lambda_pixel * px
        if target_id is not None:
            emb = self.identity_model.embed(synth)
            idl = (1 - F.cosine_similarity(emb, target_id, dim=1)).mean()
            parts["identity"] = idl.item()
            loss = loss + cfg.lambda_identity * idl
        return loss, parts

    # the inverter interface ----------------------------------------------------------------------
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(images)

    def refine(self, images: torch.Tensor, ws: torch.Tensor, steps: int) -> torch.Tensor:
        return self.project(images, ws_init=ws, steps=steps)


class EncoderInverter:
    """A learned encoder as an inverter: `encoder(images) → ws` (or `[B, w_dim]`, or offsets from w_avg with
    `offsets=True`), with `refine` by projection. For encoders such as GOAE, wrap their network in a
    callable and pass it here."""

    def __init__(self, generator, encoder: Callable[[torch.Tensor], torch.Tensor], offsets: bool = False,
                 projector: Projector | None = None) -> None:
        self.generator, self.encoder, self.offsets = generator, encoder, offsets
        self.projector = projector or Projector(generator)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        g = self.generator
        with torch.no_grad():
            ws = self.encoder(images.to(g.w_avg.device))
        if ws.dim() == 2:
            ws = ws[:, None].repeat(1, g.num_ws, 1)
        if ws.shape[1:] != (g.num_ws, g.w_dim):
            raise InputError(f"encoder returned latents of shape {tuple(ws.shape)}; the generator needs "
                             f"[B, {g.num_ws}, {g.w_dim}]")
        return ws + g.w_avg if self.offsets else ws

    def refine(self, images: torch.Tensor, ws: torch.Tensor, steps: int) -> torch.Tensor:
        return self.projector.refine(images, ws, steps)


class _Bar:
    """A rich progress bar with `update(1)`, `set_postfix(loss=...)` and `close()`."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("projecting"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("{task.fields[info]}"), transient=True)
        self.task = self.progress.add_task("projecting", total=total, info="")
        self.progress.start()

    def update(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def set_postfix(self, **fields) -> None:
        self.progress.update(self.task, info=" ".join(f"{k} {v}" for k, v in fields.items()))

    def close(self) -> None:
        self.progress.stop()


def _progress(total: int, enabled: bool) -> _Bar | None:
    return _Bar(total) if enabled else None
