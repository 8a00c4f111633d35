"""What both sides of `parity_objective.py` share: an LPIPS-VGG-shaped network with random weights, and a
stand-in for `torch.nn.functional` that records each `mse_loss` value.

No LPIPS or VGG16 weights are on this machine, and the check is of the objective's wiring, not of LPIPS:
both implementations get this same module (the same weights from one file) where the reference code calls
`lpips.LPIPS(net="vgg")`. Its structure is LPIPS v0.1's: the input shift/scale, VGG16's conv layers with the
five taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, unit-normalised channels, squared differences
weighted by non-negative 1×1 convolutions, spatial means summed over the taps; output `[N, 1, 1, 1]`.
"""

from __future__ import annotations

import torch
from torch import nn

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (1, 3, 6, 9, 12)  # conv indices (0-based) whose ReLU outputs LPIPS compares
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class RandomLPIPSVGG(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        convs, widths, c = [], [], 3
        for item in VGG16:
            if item == "M":
                continue
            conv = nn.Conv2d(c, item, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (9 * c)) ** 0.5)
                conv.bias.copy_(torch.randn(item, generator=g) * 0.01)
            convs.append(conv)
            c = item
            widths.append(item)
        self.convs = nn.ModuleList(convs)
        self.lins = nn.ModuleList(nn.Conv2d(widths[i], 1, 1, bias=False) for i in TAPS)
        with torch.no_grad():
            for lin in self.lins:
                lin.weight.copy_(torch.rand(lin.weight.shape, generator=g) / lin.weight.shape[1])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        feats, k = [], 0
        for item in VGG16:
            if item == "M":
                x = nn.functional.max_pool2d(x, 2)
                continue
            x = torch.relu(self.convs[k](x))
            if k in TAPS:
                feats.append(x)
            k += 1
        return feats

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = 0
        for lin, fa, fb in zip(self.lins, self._features(a), self._features(b), strict=True):
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((fa - fb).pow(2)).mean(dim=(2, 3), keepdim=True)
        return total


def load(path) -> RandomLPIPSVGG:
    """The module with the weights saved at `path` (a plain state dict)."""
    net = RandomLPIPSVGG()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.requires_grad_(False).eval()


class RecordingFunctional:
    """`torch.nn.functional` whose `mse_loss` also appends each value to `calls` (a module's `F` is replaced
    by one, so that the feature-MSE terms can be read off both implementations)."""

    def __init__(self, calls: list[float]) -> None:
        self.calls = calls

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def mse_loss(self, a, b, *args, **kwargs):
        value = torch.nn.functional.mse_loss(a, b, *args, **kwargs)
        self.calls.append(value.item())
        return value
