"""Vector fields f(x) for the adapters' ODE dx/dt = f(x).

Both fields end in a zero-initialised layer, so a new adapter integrates f = 0 and is exactly the identity.
"""

from __future__ import annotations

import torch
from torch import nn

FIELDS = ("conv1x1", "unet")


class Conv1x1Field(nn.Module):
    """The reference field: 1×1 conv C→hidden, LeakyReLU(0.2), 1×1 conv hidden→C (last layer zero-init).

    Initialised as the LEGATO reference code does: the first conv `kaiming_uniform_(a=0)` (bound √(6/C))
    with a zero bias, the last conv and its bias zero. Parameters: 2·C·hidden + hidden + C.
    """

    def __init__(self, channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.inp = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Conv2d(hidden, channels, kernel_size=1)
        nn.init.kaiming_uniform_(self.inp.weight, a=0)
        nn.init.zeros_(self.inp.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.inp(x)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"


def _groups(channels: int, wanted: int = 8) -> int:
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


class UNetField(nn.Module):
    """A field for UNet feature maps: GroupNorm, SiLU, 3×3 conv C→hidden, GroupNorm, SiLU, 3×3 conv hidden→C."""

    def __init__(self, channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(hidden), hidden)
        self.conv2 = nn.Conv2d(hidden, channels, kernel_size=3, padding=1)
        self.act = nn.SiLU()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        return self.conv2(self.act(self.norm2(h)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"


def make_field(name: str, channels: int, hidden: int) -> nn.Module:
    from legato.errors import InputError

    if name == "conv1x1":
        return Conv1x1Field(channels, hidden)
    if name == "unet":
        return UNetField(channels, hidden)
    raise InputError(f"unknown adapter field {name!r}; choose one of {', '.join(FIELDS)}")
