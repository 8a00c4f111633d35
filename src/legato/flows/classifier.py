"""The digits classifier the project trains for evaluation: accuracy on samples and features for FID/MMD."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ClassifierConfig:
    """Architecture (defaults: the shipped `digits_classifier.safetensors`)."""

    width: int = 32
    feature_dim: int = 128
    num_classes: int = 10


@dataclass
class ClassifierTrainConfig:
    """Recipe of the shipped classifier: Adam, random ±1-pixel shifts and small noise as augmentation."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    max_shift: int = 1
    noise_std: float = 0.1
    seed: int = 0


class DigitClassifier(nn.Module):
    """`[B, 1, 16, 16]` in [-1, 1] → logits `[B, 10]`; `features()`: the penultimate `[B, feature_dim]`."""

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ClassifierConfig()
        w = config.width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * w * 16, config.feature_dim),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        was = self.training
        self.eval()
        out = torch.cat([self(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
        self.train(was)
        return out


def _augment(x: torch.Tensor, cfg: ClassifierTrainConfig, gen: torch.Generator) -> torch.Tensor:
    if cfg.max_shift > 0:
        s = cfg.max_shift
        padded = F.pad(x, (s, s, s, s), value=-1.0)
        dx, dy = (int(v) for v in torch.randint(0, 2 * s + 1, (2,), generator=gen))
        x = padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]
    if cfg.noise_std > 0:
        x = x + cfg.noise_std * torch.randn(x.shape, generator=gen)
    return x


def train_classifier(
    config: ClassifierTrainConfig | None = None,
    model_config: ClassifierConfig | None = None,
    progress: bool = True,
) -> tuple[DigitClassifier, dict]:
    """Train on the training split; returns the model and {held_out_accuracy, per_class, wall_s}."""
    from rich.progress import track

    from legato.flows.data import load_split

    cfg = config or ClassifierTrainConfig()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = load_split()
    model = DigitClassifier(model_config)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    t0 = time.time()
    x, y = data.train_images, data.train_labels
    for _ in track(range(cfg.epochs), description="training the digits classifier", disable=not progress):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = F.cross_entropy(model(_augment(x[idx], cfg, gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    pred = model.predict(data.test_images)
    per_class = {int(c): float((pred[data.test_labels == c] == c).float().mean()) for c in range(10)}
    summary = {
        "held_out_accuracy": float((pred == data.test_labels).float().mean()),
        "per_class": per_class,
        "held_out_size": len(data.test_labels),
        "wall_s": round(time.time() - t0, 1),
        "train_config": asdict(cfg),
    }
    return model, summary
