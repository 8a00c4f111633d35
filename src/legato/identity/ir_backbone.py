"""The "IR" ResNet family of face-recognition backbones (IR-50/100/152, with or without SE units).

The attribute names and `nn.Sequential` positions are chosen so that `state_dict()` keys are exactly
those of the published checkpoints: `model_ir_se50.pth` (ArcFace IR-SE50, as used for the ID loss by
pSp/e4e/GUIDE) and `CurricularFace_Backbone.pth` (IR-101):

    input_layer.{0: conv3×3 3→64, 1: BN, 2: PReLU}
    body.{i}.shortcut_layer            MaxPool2d(1, stride) when channels stay, else {0: conv1×1, 1: BN}
    body.{i}.res_layer.{0: BN, 1: conv3×3, 2: PReLU, 3: conv3×3 (stride), 4: BN[, 5: SE (fc1, fc2)]}
    output_layer.{0: BN2d, 1: Dropout, 2: Flatten, 3: Linear(512·7·7 → 512), 4: BN1d}

The final BN1d has an affine weight and bias in the ArcFace checkpoint and none in CurricularFace's.
Input: aligned 112×112 RGB crops in [-1, 1]. Output: 512-d embeddings (not normalised here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Units per stage for each depth: four stages of widths 64, 128, 256, 512, each starting with stride 2.
STAGE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
STAGE_WIDTHS = (64, 128, 256, 512)


@dataclass(frozen=True)
class IRConfig:
    """Shape of an IR backbone. Defaults: ArcFace IR-SE50 as in `model_ir_se50.pth`."""

    depth: int = 50  # 50 | 100 | 152
    squeeze_excite: bool = True  # IR-SE units (ArcFace IR-SE50) or plain IR units (CurricularFace IR-101)
    affine_embedding_bn: bool = True  # weight/bias on the last BatchNorm1d (False in CurricularFace)
    embedding_dim: int = 512
    input_size: int = 112
    se_reduction: int = 16


class SqueezeExcite(nn.Module):
    """Channel gating: global average → 1×1 conv down → ReLU → 1×1 conv up → sigmoid → scale."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * gate


class IRUnit(nn.Module):
    """Pre-activation residual unit: BN → conv → PReLU → conv(stride) → BN [→ SE], plus a shortcut."""

    def __init__(
        self, in_channels: int, channels: int, stride: int, squeeze_excite: bool, reduction: int
    ) -> None:
        super().__init__()
        if in_channels == channels:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(kernel_size=1, stride=stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        ]
        if squeeze_excite:
            layers.append(SqueezeExcite(channels, reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """IR / IR-SE ResNet: `[N, 3, 112, 112]` in [-1, 1] → `[N, 512]` (unnormalised embeddings)."""

    def __init__(self, config: IRConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or IRConfig()
        if config.depth not in STAGE_UNITS:
            raise ValueError(f"IR depth must be one of {sorted(STAGE_UNITS)}, got {config.depth}")
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        units: list[nn.Module] = []
        in_channels = 64
        for width, count in zip(STAGE_WIDTHS, STAGE_UNITS[config.depth], strict=True):
            for k in range(count):
                units.append(
                    IRUnit(in_channels, width, 2 if k == 0 else 1, config.squeeze_excite, config.se_reduction)
                )
                in_channels = width
        self.body = nn.Sequential(*units)
        side = config.input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(512 * side * side, config.embedding_dim),
            nn.BatchNorm1d(config.embedding_dim, affine=config.affine_embedding_bn),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"depth={c.depth}, se={c.squeeze_excite}, embedding_dim={c.embedding_dim}, input={c.input_size}"
        )


ARCFACE_IR_SE50 = IRConfig(depth=50, squeeze_excite=True, affine_embedding_bn=True)
CURRICULARFACE_IR101 = IRConfig(depth=100, squeeze_excite=False, affine_embedding_bn=False)
