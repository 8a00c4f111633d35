"""The OSG decoder: a two-layer MLP from averaged tri-plane features to colour features and density."""

from __future__ import annotations

import torch
from torch import nn

from legato.generators.stylegan2.layers import FullyConnectedLayer


class OSGDecoder(nn.Module):
    """`(features [N, 3, M, C], directions [N, M, 3]) → {"rgb": [N, M, out_dim], "sigma": [N, M, 1]}`.

    Parameter names (`net.0.*`, `net.2.*`) match the released EG3D networks; directions are unused, as in
    the reference (the decoder is view-independent).
    """

    def __init__(self, n_features: int = 32, lr_multiplier: float = 1.0, output_dim: int = 32,
                 hidden_dim: int = 64) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, hidden_dim, lr_multiplier=lr_multiplier),
            nn.Softplus(),
            FullyConnectedLayer(hidden_dim, 1 + output_dim, lr_multiplier=lr_multiplier),
        )

    def forward(self, sampled_features: torch.Tensor, ray_directions: torch.Tensor) -> dict[str, torch.Tensor]:
        x = sampled_features.mean(1)
        n, m, c = x.shape
        x = self.net(x.reshape(n * m, c)).reshape(n, m, -1)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001  # MipNeRF's widened sigmoid
        return {"rgb": rgb, "sigma": x[..., 0:1]}
