"""A small class-conditional UNet predicting the flow-matching velocity v(x_t, t, y) on 16×16 digits.

Layout (channels per resolution 32/64/64 by default, about 0.72 M parameters):
`inp` conv → `down.0` (16×16) → `down.1` (8×8) → `down.2` (4×4) → `mid` (4×4) → `up.0` (4×4) → `up.1` (8×8)
→ `up.2` (16×16) → `out`. `mid` is the natural site for a Neural-ODE adapter: every class passes its
information through its feature map. Class index `num_classes` is the "no class" token used for
classifier-free dropout during training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UNetConfig:
    """Architecture of the digits flow (defaults: the shipped weights)."""

    channels: tuple[int, ...] = (32, 64, 64)
    emb_dim: int = 128
    num_classes: int = 10
    image_channels: int = 1
    groups: int = 8

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        d["channels"] = tuple(int(c) for c in d.get("channels", cls.channels))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t ∈ [0, 1] (scaled by 1000), shape `[B, dim]`."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv, plus the (time, class) embedding as a per-channel shift, twice; residual."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.in_channels, self.out_channels = cin, cout
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class MidBlock(nn.Module):
    """Two residual blocks at the lowest resolution; its output is the adapter site `mid`."""

    def __init__(self, channels: int, emb_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.out_channels = channels
        self.block1 = ResBlock(channels, channels, emb_dim, groups)
        self.block2 = ResBlock(channels, channels, emb_dim, groups)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(x, emb), emb)


class FlowUNet(nn.Module):
    """v(x_t, t, y): `x` `[B, 1, 16, 16]`, `t` `[B]` in [0, 1], `y` `[B]` class indices (10 = no class)."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        ch, e, g = list(config.channels), config.emb_dim, config.groups
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.class_emb = nn.Embedding(config.num_classes + 1, e)
        self.inp = nn.Conv2d(config.image_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = ch[0]
        for i, c in enumerate(ch):
            self.down.append(ResBlock(cin, c, e, g))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            cin = c
        self.mid = MidBlock(cin, e, g)
        self.up = nn.ModuleList()
        for c in reversed(ch):
            self.up.append(ResBlock(cin + c, c, e, g))
            cin = c
        self.out_norm = nn.GroupNorm(min(g, cin), cin)
        self.out = nn.Conv2d(cin, config.image_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_mlp(timestep_embedding(t, self.config.emb_dim)) + self.class_emb(y)
        emb = F.silu(emb)
        h = self.inp(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return self.out(F.silu(self.out_norm(h)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
