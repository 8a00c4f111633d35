"""The StyleGAN2 network (mapping + synthesis, as NVIDIA's `Generator`) and its `Generator`-interface wrapper."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from legato.errors import CheckpointError
from legato.generators.base import Generator
from legato.generators.construct import construct_and_load
from legato.generators.stylegan2.layers import MappingNetwork, SynthesisNetwork

_ARG_NAMES = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


class StyleGAN2Network(nn.Module):
    """NVIDIA's StyleGAN2 `Generator` with the same constructor and tensor names (`mapping.*`, `synthesis.*`).

    Accepts both spellings of the synthesis options: `synthesis_kwargs={...}` (stylegan2-ada-pytorch) and
    plain keyword arguments (stylegan3 repository).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Mapping | None = None, synthesis_kwargs: Mapping | None = None,
                 **more_synthesis_kwargs) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        syn_kwargs = {**dict(synthesis_kwargs or {}), **more_synthesis_kwargs}
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **syn_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **dict(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)


def build_stylegan2(init_args, init_kwargs: Mapping, tensors: Mapping[str, torch.Tensor],
                    source: str = "the pickle") -> StyleGAN2Network:
    """Construct the network from its pickled constructor arguments and load `tensors` with `strict=True`.

    fp16 tensors are converted to float32 (the network always computes in float32).
    """
    kwargs = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dict(init_kwargs).items()}
    for name, value in zip(_ARG_NAMES, list(init_args or ()), strict=False):
        kwargs[name] = value
    missing = [k for k in _ARG_NAMES[:4] if k not in kwargs]
    if missing:
        raise CheckpointError(f"{source}: the StyleGAN2 constructor arguments lack {', '.join(missing)}")
    kwargs.setdefault("img_channels", 3)
    net = construct_and_load(StyleGAN2Network, kwargs, tensors, source=source, kind="StyleGAN2",
                             constructor_errors=(TypeError, ValueError))
    return net.eval().requires_grad_(False)


class StyleGAN2Generator(Generator):
    """A StyleGAN2 network behind the `Generator` interface.

    - `synthesis` runs with `noise_mode` (default 'const': deterministic, as NVIDIA's tools render).
      Images are the network's raw output (nominally [-1, 1]; a trained model slightly overshoots).
    - `views(n)`: a 2D StyleGAN2 has no camera: `n` copies of the empty camera, zeros `[n, c_dim]`
      (`[n, 0]` for unconditional models; a class-conditional model gets the zero label).
    - `features`: the output feature map of the middle synthesis block (`feature_resolution`, default
      the block at index `len(blocks) // 2`, i.e. 32×32 for 256² and 1024² models have 64×64).
    - `adapter_sites`: `conv1` of every block that has an input (all blocks but 4×4), before its ToRGB.
    """

    name = "stylegan2"
    photo_framing = "ffhq"  # the NVIDIA face models (FFHQ, CelebA-HQ) are FFHQ-aligned

    def __init__(self, network: StyleGAN2Network, noise_mode: str = "const",
                 feature_resolution: int | None = None) -> None:
        super().__init__()
        self.mapping_network = network.mapping
        self.synthesis_network = network.synthesis
        self.z_dim, self.c_dim, self.w_dim = network.z_dim, network.c_dim, network.w_dim
        self.num_ws, self.img_resolution = network.num_ws, network.img_resolution
        self.noise_mode = noise_mode
        blocks = self.synthesis_network.block_resolutions
        self.feature_resolution = feature_resolution or blocks[len(blocks) // 2]
        if self.feature_resolution not in blocks:
            raise CheckpointError(f"feature_resolution must be one of {blocks}, got {feature_resolution}")

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping_network.w_avg

    def _labels(self, c: torch.Tensor | None, n: int, device) -> torch.Tensor:
        return torch.zeros(n, self.c_dim, device=device) if c is None else c

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        return self.mapping_network(z, self._labels(c, z.shape[0], z.device), truncation_psi=truncation_psi,
                                    truncation_cutoff=truncation_cutoff)

    def synthesis_with_features(self, ws: torch.Tensor, c: torch.Tensor | None = None):
        net = self.synthesis_network
        x = img = feats = None
        for res, cur_ws in zip(net.block_resolutions, net.block_ws(ws.float()), strict=True):
            x, img = getattr(net, f"b{res}")(x, img, cur_ws, noise_mode=self.noise_mode)
            if res == self.feature_resolution:
                feats = x
        return img, feats

    def synthesis(self, ws: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesis_network(ws, noise_mode=self.noise_mode)

    def features(self, ws: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesis_with_features(ws, c)[1]

    def adapter_sites(self) -> list[str]:
        return [f"synthesis_network.b{res}.conv1" for res in self.synthesis_network.block_resolutions if res > 4]

    def views(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.c_dim, device=self.w_avg.device)


def network_parts(net: StyleGAN2Network, init_kwargs: Mapping) -> dict:
    """What the NVlabs-format writer needs to store `net` as a StyleGAN2 `Generator` (test fixtures)."""
    return {
        "class_name": "Generator",
        "init_args": (),
        "init_kwargs": dict(init_kwargs),
        "tensors": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "attributes": {k: getattr(net, k) for k in (*_ARG_NAMES, "num_ws")},
    }
