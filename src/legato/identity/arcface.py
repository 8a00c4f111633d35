"""ArcFace IR-SE50 and CurricularFace IR-101 as `IdentityModel`s, loaded from user-supplied weights.

Both take 112×112 RGB crops in [-1, 1] aligned to the five-point ArcFace template. Generator outputs
(FFHQ-framed) go through `align_ffhq`, a fixed similarity transform applied with `grid_sample`, so the
embedding is differentiable with respect to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from legato.identity import faces
from legato.identity.align import ARCFACE_TEMPLATE_112, align_ffhq, align_points
from legato.identity.base import IdentityModel, check_images
from legato.identity.checkpoints import load_into, read_state_dict
from legato.identity.ir_backbone import ARCFACE_IR_SE50, CURRICULARFACE_IR101, IRBackbone, IRConfig


class IRModel(IdentityModel):
    """An IR-family backbone (frozen, eval mode) behind the `IdentityModel` interface."""

    differentiable = True
    crop_size = 112
    config: IRConfig = ARCFACE_IR_SE50
    expected_file = "an IR backbone state dict"

    def __init__(self, network: IRBackbone | None = None, threshold: float | None = None) -> None:
        self.network = (network or IRBackbone(self.config)).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.dim = self.network.config.embedding_dim
        if threshold is not None:
            self.threshold = threshold

    @classmethod
    def from_file(cls, path: str | Path, threshold: float | None = None) -> IRModel:
        """Load a state dict saved with `torch.save` (read with `weights_only=True`)."""
        state = read_state_dict(path)
        with torch.device("meta"):  # no point initialising 44-65 M weights that are overwritten next
            network = IRBackbone(cls.config)
        network.to_empty(device="cpu")
        load_into(network, state, path, cls.expected_file)
        return cls(network, threshold)

    @classmethod
    def random(cls, seed: int = 0) -> IRModel:
        """Randomly initialised weights (for tests and timing); BN statistics are made non-trivial."""
        gen = torch.Generator().manual_seed(seed)
        with torch.device("meta"):
            network = IRBackbone(cls.config)
        network.to_empty(device="cpu")
        with torch.no_grad():
            for name, t in network.state_dict().items():
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=gen))
                elif name.endswith("running_mean"):
                    t.copy_(0.1 * torch.randn(t.shape, generator=gen))
                elif name.endswith("num_batches_tracked"):
                    t.zero_()
                elif t.dim() > 1:  # conv / linear weights: unit-variance outputs
                    t.copy_(torch.randn(t.shape, generator=gen) / np.sqrt(t[0].numel()))
                elif name.endswith("bias"):
                    t.zero_()
                else:  # BatchNorm scales and PReLU slopes
                    t.fill_(1.0 if "res_layer.2" not in name and "input_layer.2" not in name else 0.25)
        return cls(network)

    def to(self, device: str | torch.device) -> IRModel:
        self.network.to(device)
        return self

    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """Aligned `[N, 3, 112, 112]` crops in [-1, 1] → unit embeddings `[N, dim]`."""
        check_images(crops)
        if crops.shape[-2:] != (self.crop_size, self.crop_size):
            raise ValueError(
                f"expected {self.crop_size}×{self.crop_size} crops, got {tuple(crops.shape[-2:])}"
            )
        return F.normalize(self.network(crops), dim=-1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        return self.embed_crops(align_ffhq(images, self.crop_size, ARCFACE_TEMPLATE_112))

    def embed_faces(self, rgbs: Sequence[np.ndarray], found: Sequence[faces.Face]) -> torch.Tensor:
        crops = []
        for rgb, face in zip(rgbs, found, strict=True):
            points = faces.arcface_points(rgb, face.box) + 0.5  # pixel indices → continuous coordinates
            image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1
            crops.append(align_points(image, points[None], self.crop_size, ARCFACE_TEMPLATE_112))
        device = next(self.network.parameters()).device
        with torch.no_grad():
            return self.embed_crops(torch.cat(crops).to(device))


class IRSE50Model(IRModel):
    """ArcFace IR-SE50 (`model_ir_se50.pth`), the network behind the ID loss of pSp, e4e and GUIDE."""

    name = "arcface-ir-se50"
    config = ARCFACE_IR_SE50
    expected_file = "ArcFace IR-SE50 (model_ir_se50.pth)"
    # A conventional verification cosine for ArcFace-family networks; not measured here (no weights
    # ship with legato): run benchmarks/lfw.py --model arcface:PATH, which reports the best threshold.
    threshold = 0.25


class IR101Model(IRModel):
    """CurricularFace IR-101 (`CurricularFace_Backbone.pth`), the network behind the ID metric."""

    name = "curricularface-ir-101"
    config = CURRICULARFACE_IR101
    expected_file = "CurricularFace IR-101 (CurricularFace_Backbone.pth)"
    threshold = 0.25  # as for IR-SE50: conventional, measure with benchmarks/lfw.py
