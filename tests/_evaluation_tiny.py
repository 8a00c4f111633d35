"""A tiny generator whose identities are well separated, and its identity model (test fixtures).

Each latent becomes an 8×8 feature map through a fixed random linear map; a 1×1 conv (`body`, the adapter
site) and a 1×1 ToRGB follow; the camera shifts the image a little. The identity model projects the
centred pixels to 16 numbers, so different latents have near-orthogonal embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from legato.generators.base import Generator


class TinyIdentity(nn.Module):
    name = "tiny-id"
    threshold = 0.5

    def __init__(self, res: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.register_buffer("proj", torch.randn(3 * res * res, 16, generator=g))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) @ self.proj / 8

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flatten(1)
        return F.normalize((x - x.mean(1, keepdim=True)) @ self.proj, dim=1)


class TinyGenerator(Generator):
    name = "tiny"

    def __init__(self, channels: int = 6, res: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.z_dim, self.w_dim, self.num_ws, self.c_dim, self.img_resolution = 8, 8, 2, 1, res
        self.channels, self.res = channels, res
        self.map = nn.Linear(8, 8)
        self.lift = nn.Linear(8, channels * res * res)
        self.body = nn.Conv2d(channels, channels, 1)
        self.torgb = nn.Conv2d(channels, 3, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.body.weight.copy_(torch.eye(channels)[:, :, None, None])
            for layer in (self.map, self.lift, self.body, self.torgb):  # no biases: no face shared by all
                layer.bias.zero_()
        self.register_buffer("_w_avg", torch.zeros(8))
        self.__dict__["_id"] = TinyIdentity(res)
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def w_avg(self) -> torch.Tensor:
        return self._w_avg

    def mapping(self, z, c=None, truncation_psi=1.0):
        w = self.map(z) * truncation_psi
        return w[:, None].repeat(1, self.num_ws, 1)

    def features(self, ws, c=None):
        return self.lift(ws[:, 0]).view(-1, self.channels, self.res, self.res)

    def synthesis(self, ws, c=None):
        x = self.body(self.features(ws))
        img = self.torgb(x)
        if c is not None:
            img = img + 0.1 * c[:, :1, None, None]
        return torch.tanh(img)

    def adapter_sites(self) -> list[str]:
        return ["body"]

    def views(self, n: int) -> torch.Tensor:
        return torch.linspace(-1, 1, n)[:, None] if n > 1 else torch.zeros(1, 1)

    def identity_model(self):
        return self._id

    def real_images(self, n: int, seed: int = 0) -> torch.Tensor:
        z = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed + 5))
        with torch.no_grad():
            return self(z, self.views(n))


class ShuffledGenerator(TinyGenerator):
    """Same weights, but each person in a batch is drawn as another person of that batch (a derangement of
    the distinct latents; the cameras stay where they were)."""

    def synthesis(self, ws, c=None):
        flat = ws.flatten(1)
        unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
        swapped = unique.roll(1, dims=0)[inverse]
        return super().synthesis(swapped.view_as(ws), c)


class NoisyGenerator(TinyGenerator):
    """Same people, images degraded with fixed noise (quality lost, identity mostly kept)."""

    def synthesis(self, ws, c=None):
        img = super().synthesis(ws, c)
        noise = torch.randn(img.shape[1:], generator=torch.Generator().manual_seed(0))
        return (img + 0.8 * noise).clamp(-1, 1)


def push_adapter(adapter_set, amount: float = 3.0) -> None:
    """Make every adapter's field a constant push (f(x) = amount), so strength moves outputs steadily."""
    with torch.no_grad():
        for adapter in adapter_set:
            for name, p in adapter.named_parameters():
                if name.endswith("out.bias") or name.endswith("conv2.bias"):
                    p.fill_(amount)


def one_thread():
    """Generator fixture body: run a test module on one thread (the CI machine is shared), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
