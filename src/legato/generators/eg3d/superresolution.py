"""Super-resolution networks of the released EG3D models: the neural-rendered 32-channel feature image
(64² or 128²) is lifted to the output resolution by two StyleGAN2 synthesis blocks driven by the last w.

Variants (names as in the pickles' `rendering_kwargs['superresolution_module']`):
- `SuperresolutionHybrid8XDC` (FFHQ 512, `ffhqrebalanced512-128.pkl`): two upsampling blocks, 256 → 128 ch;
- `SuperresolutionHybrid8X`: two upsampling blocks, 128 → 64 channels;
- `SuperresolutionHybrid4X`, `SuperresolutionHybrid2X`, `SuperresolutionHybridDeepfp32`: a block at the
  input resolution, then one upsampling block, 128 → 64 channels.
The reference fixes the output resolution of each variant (512, 512, 256, 128, 256); here the input
resolution is derived from `img_resolution` so small test networks can use the same structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from legato.errors import InputError
from legato.generators.stylegan2.layers import SynthesisBlock, SynthesisLayer, ToRGBLayer
from legato.generators.stylegan2.resample import setup_filter


@dataclass(frozen=True)
class _Variant:
    first_upsamples: bool  # block0 doubles the resolution (else it works at the input resolution)
    channels: tuple[int, int]
    only_enlarge: bool  # resize the input only when it is smaller than the input resolution
    antialias_option: bool  # takes `sr_antialias`
    filter_buffer: bool  # has a module-level `resample_filter` buffer


VARIANTS = {
    "SuperresolutionHybrid8XDC": _Variant(True, (256, 128), False, True, False),
    "SuperresolutionHybrid8X": _Variant(True, (128, 64), False, True, True),
    "SuperresolutionHybrid4X": _Variant(False, (128, 64), True, True, True),
    "SuperresolutionHybrid2X": _Variant(False, (128, 64), False, True, True),
    "SuperresolutionHybridDeepfp32": _Variant(False, (128, 64), True, False, True),
}


class SynthesisBlockNoUp(nn.Module):
    """A StyleGAN2 synthesis block without upsampling (skip architecture): two modulated 3×3 convolutions at
    `resolution` and a ToRGB added to the incoming image. Names match the reference's `SynthesisBlockNoUp`."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter=(1, 3, 3, 1), conv_clamp=256,
                 use_fp16: bool = False, fp16_channels_last: bool = False, fused_modconv_default=True,
                 **layer_kwargs) -> None:
        super().__init__()
        if architecture != "skip" or in_channels == 0:
            raise InputError("EG3D super-resolution: only skip blocks with an input are supported")
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture = img_channels, is_last, architecture
        self.use_fp16 = use_fp16
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_conv, self.num_torgb = 2, 1
        self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)

    def forward(self, x, img, ws, fused_modconv=None, update_emas=False, force_fp32=False, **layer_kwargs):
        if fused_modconv is None or fused_modconv == "inference_only":
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training
        w0, w1, w2 = ws.unbind(dim=1)
        x = self.conv0(x.float(), w0, fused_modconv=fused_modconv, **layer_kwargs)
        x = self.conv1(x, w1, fused_modconv=fused_modconv, **layer_kwargs)
        y = self.torgb(x, w2, fused_modconv=fused_modconv).float()
        return x, (img + y if img is not None else y)


class Superresolution(nn.Module):
    """`(rgb [N, 3, r, r], features [N, C, r, r], ws [N, num_ws, w_dim]) → image [N, 3, R, R]`."""

    def __init__(self, variant: str, channels: int, img_resolution: int, sr_num_fp16_res: int = 0,
                 sr_antialias: bool = True, w_dim: int = 512, block_channels: tuple[int, int] | None = None,
                 # accepted and ignored, as in the reference:
                 num_fp16_res=None, conv_clamp=None, channel_base=None, channel_max=None,
                 **block_kwargs) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise InputError(f"EG3D super-resolution module {variant!r} is not supported; "
                             f"supported: {', '.join(sorted(VARIANTS))}")
        spec = VARIANTS[variant]
        self.variant, self.spec = variant, spec
        c0, c1 = block_channels or spec.channels
        use_fp16 = sr_num_fp16_res > 0
        clamp = 256 if use_fp16 else None
        self.sr_antialias = sr_antialias if spec.antialias_option else False
        if spec.first_upsamples:
            self.input_resolution = img_resolution // 4
            self.block0 = SynthesisBlock(channels, c0, w_dim=w_dim, resolution=img_resolution // 2, img_channels=3,
                                         is_last=False, use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs)
        else:
            self.input_resolution = img_resolution // 2
            self.block0 = SynthesisBlockNoUp(channels, c0, w_dim=w_dim, resolution=img_resolution // 2,
                                             img_channels=3, is_last=False, use_fp16=use_fp16, conv_clamp=clamp,
                                             **block_kwargs)
        self.block1 = SynthesisBlock(c0, c1, w_dim=w_dim, resolution=img_resolution, img_channels=3, is_last=True,
                                     use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs)
        if spec.filter_buffer:
            self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def _resize(self, t: torch.Tensor) -> torch.Tensor:
        size = self.input_resolution
        if t.shape[-1] == size or (self.spec.only_enlarge and t.shape[-1] > size):
            return t
        kwargs = {"antialias": self.sr_antialias} if self.spec.antialias_option else {}
        return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, **kwargs)

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        ws = ws[:, -1:, :].repeat(1, 3, 1)
        x, rgb = self._resize(x), self._resize(rgb)
        x, rgb = self.block0(x, rgb, ws, **block_kwargs)
        x, rgb = self.block1(x, rgb, ws, **block_kwargs)
        return rgb
