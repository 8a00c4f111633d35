"""A tiny random generator implementing the full `Generator` interface, for tests and examples.

It has the shape of the real thing (mapping → ws, style-modulated blocks at 8 and 16 pixels, a camera,
adapter sites, an identity model) at a size that trains in milliseconds. Its outputs mean nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from legato.generators.base import Generator


class _StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, w_dim: int) -> None:
        super().__init__()
        self.out_channels = cout
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(w_dim, cin)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x * (1 + self.affine(w))[:, :, None, None]), 0.2)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, w_dim: int) -> None:
        super().__init__()
        self.conv0 = _StyledConv(cin, cout, w_dim)
        self.conv1 = _StyledConv(cout, cout, w_dim)
        self.torgb = nn.Conv2d(cout, 3, 1)

    def forward(self, x, w0, w1):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv1(self.conv0(x, w0), w1)
        return x, self.torgb(x)


class _Synthesis(nn.Module):
    def __init__(self, w_dim: int, c_dim: int, channels: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(channels, 4, 4))
        self.camera = nn.Linear(c_dim, channels)
        self.b8 = _Block(channels, channels, w_dim)
        self.b16 = _Block(channels, channels, w_dim)


class ToyIdentityModel(nn.Module):
    """A fixed random CNN: unit embeddings, a threshold, penultimate features and feature maps."""

    name = "toy-id"
    threshold = 0.5
    differentiable = True

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 16)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(x, size=16, mode="bilinear", align_corners=False)
        a = F.leaky_relu(self.c1(x), 0.2)
        return [a, F.leaky_relu(self.c2(a), 0.2)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(x)[-1].flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.features(x)), dim=1)


class ToyGenerator(Generator):
    name = "toy"

    def __init__(self, seed: int = 0, z_dim: int = 8, w_dim: int = 16, channels: int = 8) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.z_dim, self.w_dim, self.num_ws, self.c_dim, self.img_resolution = z_dim, w_dim, 4, 2, 16
        self.mapping_network = nn.Sequential(nn.Linear(z_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim))
        self.synthesis_network = _Synthesis(w_dim, 2, channels)
        with torch.no_grad():
            self.register_buffer("_w_avg", self.mapping_network(torch.randn(256, z_dim)).mean(0))
        self.__dict__["_identity"] = ToyIdentityModel(seed)  # a helper model, not part of the weights
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def w_avg(self) -> torch.Tensor:
        return self._w_avg

    def mapping(self, z, c=None, truncation_psi=1.0):
        w = self.mapping_network(z)
        w = self._w_avg + truncation_psi * (w - self._w_avg)
        return w[:, None].repeat(1, self.num_ws, 1)

    def _run(self, ws, c):
        s = self.synthesis_network
        c = torch.zeros(ws.shape[0], 2, device=ws.device) if c is None else c
        x = s.const[None].expand(ws.shape[0], -1, -1, -1) + s.camera(c)[:, :, None, None]
        x, img8 = s.b8(x, ws[:, 0], ws[:, 1])
        feats = x
        x, img16 = s.b16(x, ws[:, 2], ws[:, 3])
        img = F.interpolate(img8, scale_factor=2, mode="bilinear", align_corners=False) + img16
        return torch.tanh(img), feats

    def synthesis(self, ws, c=None):
        return self._run(ws, c)[0]

    def features(self, ws, c=None):
        return self._run(ws, c)[1]

    def synthesis_with_features(self, ws, c=None):
        return self._run(ws, c)

    def adapter_sites(self) -> list[str]:
        return ["synthesis_network.b8.conv1", "synthesis_network.b16.conv1"]

    def views(self, n: int) -> torch.Tensor:
        yaw = torch.linspace(-0.26, 0.26, n) if n > 1 else torch.zeros(1)
        return torch.stack([yaw, torch.zeros_like(yaw)], dim=1)

    def identity_model(self):
        return self._identity

    def real_images(self, n: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed + 7)
        with torch.no_grad():
            return self(torch.randn(n, self.z_dim, generator=g))
