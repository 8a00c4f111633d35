"""The EG3D tri-plane generator: StyleGAN2 backbone → three 32-channel feature planes → OSG decoder and
volume rendering → super-resolution. Parameter and buffer names equal the released networks'
(`backbone.mapping.*`, `backbone.synthesis.b*.*`, `decoder.net.*`, `superresolution.block*.*`), so their
tensors load by name with `strict=True`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from legato.generators.eg3d.cameras import split_camera
from legato.generators.eg3d.decoder import OSGDecoder
from legato.generators.eg3d.rays import sample_rays
from legato.generators.eg3d.renderer import ImportanceRenderer, RenderingOptions
from legato.generators.eg3d.superresolution import Superresolution
from legato.generators.stylegan2.layers import MappingNetwork, SynthesisNetwork

PLANE_CHANNELS = 32  # feature channels per plane in every released model
BACKBONE_RESOLUTION = 256  # tri-plane resolution of every released model


class Backbone(nn.Module):
    """StyleGAN2 mapping + synthesis producing the stacked tri-planes `[N, 3·32, H, W]`."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, **synthesis_kwargs) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))


def _superresolution_name(rendering_kwargs: dict) -> str:
    return str(rendering_kwargs.get("superresolution_module", "SuperresolutionHybrid8XDC")).rsplit(".", 1)[-1]


class TriPlaneGenerator(nn.Module):
    """Constructed from the pickled `init_kwargs` of `training.triplane.TriPlaneGenerator`.

    Two optional `rendering_kwargs` keys that the released models do not have make small test networks
    possible: `backbone_resolution` (default 256) and `sr_channels` (the super-resolution blocks' widths).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int = 3,
                 sr_num_fp16_res: int = 0, mapping_kwargs: dict | None = None, rendering_kwargs: dict | None = None,
                 sr_kwargs: dict | None = None, **synthesis_kwargs) -> None:
        super().__init__()
        rendering_kwargs = dict(rendering_kwargs or {})
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.renderer = ImportanceRenderer()
        backbone_resolution = int(rendering_kwargs.get("backbone_resolution", BACKBONE_RESOLUTION))
        self.backbone = Backbone(z_dim, c_dim, w_dim, img_resolution=backbone_resolution,
                                 img_channels=PLANE_CHANNELS * 3, mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        sr_channels = rendering_kwargs.get("sr_channels")
        self.superresolution = Superresolution(
            _superresolution_name(rendering_kwargs), channels=PLANE_CHANNELS, img_resolution=img_resolution,
            sr_num_fp16_res=sr_num_fp16_res, sr_antialias=rendering_kwargs.get("sr_antialias", True), w_dim=w_dim,
            block_channels=tuple(sr_channels) if sr_channels else None, **(sr_kwargs or {}))
        self.decoder = OSGDecoder(PLANE_CHANNELS, lr_multiplier=rendering_kwargs.get("decoder_lr_mul", 1),
                                  output_dim=PLANE_CHANNELS)
        self.neural_rendering_resolution = 64  # the pickles store the trained value (128 for the 512² models)
        self.rendering_kwargs = rendering_kwargs
        self.options = RenderingOptions.from_rendering_kwargs(rendering_kwargs)
        self.checkpoint_superresolution = False  # recompute the super-resolution in the backward pass

    @property
    def num_ws(self) -> int:
        return self.backbone.num_ws

    def mapping(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """z `[N, z_dim]`, conditioning camera c `[N, 25]` → ws `[N, num_ws, w_dim]`."""
        if self.rendering_kwargs.get("c_gen_conditioning_zero", False):
            c = torch.zeros_like(c)
        return self.backbone.mapping(z, c * self.rendering_kwargs.get("c_scale", 0), truncation_psi=truncation_psi,
                                     truncation_cutoff=truncation_cutoff)

    def triplanes(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws → tri-planes `[N, 3, 32, H, W]`."""
        planes = self.backbone.synthesis(ws, noise_mode=noise_mode)
        return planes.view(len(planes), 3, PLANE_CHANNELS, planes.shape[-2], planes.shape[-1])

    def synthesis(self, ws: torch.Tensor, c: torch.Tensor, neural_rendering_resolution: int | None = None,
                  noise_mode: str = "const", planes: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """ws `[N, num_ws, w_dim]`, camera c `[N, 25]` → `image` `[N, 3, R, R]`, `image_raw` `[N, 3, r, r]`
        (both in [-1, 1]), `image_depth` `[N, 1, r, r]` and `planes`. `planes` may be given to skip the
        backbone; `generator` drives the renderer's random depths (global RNG when None)."""
        cam2world, intrinsics = split_camera(c)
        res = int(neural_rendering_resolution or self.neural_rendering_resolution)
        origins, directions = sample_rays(cam2world, intrinsics, res)
        if planes is None:
            planes = self.triplanes(ws, noise_mode=noise_mode)
        features, depth, _ = self.renderer(planes, self.decoder, origins, directions, self.options, generator)
        n = ws.shape[0]
        feature_image = features.permute(0, 2, 1).reshape(n, features.shape[-1], res, res).contiguous()
        depth_image = depth.permute(0, 2, 1).reshape(n, 1, res, res)
        rgb_image = feature_image[:, :3]
        sr_noise = self.rendering_kwargs.get("superresolution_noise_mode", "none")
        if self.checkpoint_superresolution and torch.is_grad_enabled():
            image = checkpoint(self.superresolution, rgb_image, feature_image, ws, noise_mode=sr_noise,
                               use_reentrant=False)
        else:
            image = self.superresolution(rgb_image, feature_image, ws, noise_mode=sr_noise)
        return {"image": image, "image_raw": rgb_image, "image_depth": depth_image, "planes": planes}

    def extra_repr(self) -> str:
        return (f"img_resolution={self.img_resolution}, neural_rendering_resolution="
                f"{self.neural_rendering_resolution}, superresolution={self.superresolution.variant}")
