"""The identity encoder of the SynthFaces world: 64×64 photo → 128-d unit embedding.

It plays the role ArcFace / CurricularFace play for real faces: two photos show the same person when the
cosine of their embeddings is at least `.threshold` (chosen on held-out people, see docs/reference/synthfaces.md).
Its 256-d penultimate features (`.features`) are this world's FID feature extractor ("SynthFaces-ID FID",
not Inception FID), and `.feature_maps` gives intermediate maps for a perceptual loss.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from legato.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
IDENTITY_WEIGHTS = WEIGHTS_DIR / "identity.safetensors"
# the independent judge: trained apart from the encoder above, used by nothing but evaluation
JUDGE_WEIGHTS = WEIGHTS_DIR / "judge.safetensors"
FORMAT = "legato-synthfaces-identity"


@dataclass
class BackboneConfig:
    """A small ResNet for 64×64 inputs (this project's own design; sized for a ≤ 20 min CPU recipe)."""

    widths: tuple[int, int, int, int] = (24, 48, 96, 160)
    squeeze: int = 64  # channels of the 4×4 map that is flattened
    features: int = 256  # penultimate width


class _Block(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity skip."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Backbone(nn.Module):
    """images `[B, 3, 64, 64]` in [-1, 1] → maps at 32², 16², 8² and a feature vector `[B, features]`."""

    def __init__(self, config: BackboneConfig | None = None):
        super().__init__()
        self.config = cfg = config or BackboneConfig()
        w = cfg.widths
        self.stage1 = nn.Sequential(_down(3, w[0]), _Block(w[0]))
        self.stage2 = nn.Sequential(_down(w[0], w[1]), _Block(w[1]))
        self.stage3 = nn.Sequential(_down(w[1], w[2]), _Block(w[2]))
        self.stage4 = nn.Sequential(_down(w[2], w[3]), nn.Conv2d(w[3], cfg.squeeze, 1))
        self.fc = nn.Linear(cfg.squeeze * 16, cfg.features)
        self.bn = nn.BatchNorm1d(cfg.features)

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        if images.shape[-2:] != (64, 64):
            images = F.interpolate(
                images, size=(64, 64), mode="bilinear", align_corners=False, antialias=True
            )
        return images.contiguous(memory_format=torch.channels_last)

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self._check(images)
        m1 = self.stage1(x)
        m2 = self.stage2(m1)
        m3 = self.stage3(m2)
        return [m1, m2, m3]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m3 = self.maps(images)[-1]
        return self.bn(self.fc(self.stage4(m3).flatten(1)))


class IdentityEncoder(nn.Module):
    """Backbone + a linear projection to a unit embedding; carries its verification threshold."""

    name = "synthfaces-id"

    def __init__(self, config: BackboneConfig | None = None, embed_dim: int = 128, threshold: float = 0.5):
        super().__init__()
        self.backbone = Backbone(config)
        self.head = nn.Linear(self.backbone.config.features, embed_dim)
        self.embed_dim = embed_dim
        self.threshold = float(threshold)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features `[B, 256]` (this world's FID features)."""
        return self.backbone(images)

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate maps `[B, 24, 32, 32]`, `[B, 48, 16, 16]`, `[B, 96, 8, 8]` (perceptual loss)."""
        return self.backbone.maps(images)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images `[B, 3, 64, 64]` in [-1, 1] → unit embeddings `[B, 128]` (differentiable)."""
        return F.normalize(self.head(self.backbone(images)), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity `[B]` of paired images."""
        return (self.embed(a) * self.embed(b)).sum(1)

    def verify(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Whether paired images show the same person: `[B]` bool at `.threshold`."""
        return self.similarity(a, b) >= self.threshold

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, threshold={self.threshold:.4f}"


def save_identity_model(model: IdentityEncoder, path: str | Path, extra: dict | None = None) -> Path:
    """Write the encoder as safetensors (tensors + JSON metadata: config, threshold, provenance)."""
    from safetensors.torch import save

    from legato.files import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "version": "1",
        "config": json.dumps({**asdict(model.backbone.config), "embed_dim": model.embed_dim}),
        "threshold": repr(float(model.threshold)),
        "name": str(model.name),
        "extra": json.dumps(extra or {}),
    }
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata stored with a weights file (config, threshold, training facts)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_identity_model(
    device: str | torch.device = "cpu", path: str | Path | None = None
) -> IdentityEncoder:
    """The shipped identity encoder (eval mode, frozen) with `.embed`, `.threshold`, `.features`."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else IDENTITY_WEIGHTS
    if not path.is_file():
        raise CheckpointError(
            f"identity encoder weights not found at {path}; "
            "run `legato synthfaces train identity` to create them"
        )
    try:
        meta = read_metadata(path)
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read identity encoder weights {path}: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SynthFaces identity encoder (format {meta.get('format')!r})")
    cfg = json.loads(meta["config"])
    embed_dim = cfg.pop("embed_dim")
    cfg["widths"] = tuple(cfg["widths"])
    model = IdentityEncoder(BackboneConfig(**cfg), embed_dim=embed_dim, threshold=float(meta["threshold"]))
    model.name = meta.get("name", IdentityEncoder.name)  # files before the judge existed: the shipped encoder
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the encoder: missing {missing}, unexpected {unexpected}"
        )
    model.eval().requires_grad_(False)
    return model.to(device)


def load_judge_model(device: str | torch.device = "cpu", path: str | Path | None = None) -> IdentityEncoder:
    """The shipped independent judge (`legato synthfaces train judge`), loaded like the identity encoder."""
    path = Path(path) if path is not None else JUDGE_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"SynthFaces judge weights not found at {path}; run `legato synthfaces train judge` "
                              "to create them")
    return load_identity_model(device=device, path=path)
