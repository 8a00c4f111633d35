"""Loss terms: perceptual (LPIPS when available, else an offline fallback), identity, feature MSE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from legato.errors import InputError


class MultiScaleL1(nn.Module):
    """Offline fallback with no learned weights: mean L1 over an image pyramid (64², 32², 16², 8²)."""

    name = "multiscale-l1"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(())
        for _ in range(4):
            total = total + (a - b).abs().mean()
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        return total / 4


class IdentityFeatureDistance(nn.Module):
    """Perceptual distance in the feature maps of the world's identity encoder (channel-normalised, as LPIPS
    does), for worlds with no ImageNet backbone at hand."""

    name = "identity-features"

    def __init__(self, identity_model: nn.Module) -> None:
        super().__init__()
        self.identity_model = identity_model

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.identity_model.feature_maps(a), self.identity_model.feature_maps(b)
        total = a.new_zeros(())
        for x, y in zip(fa, fb, strict=True):
            x = x / (x.norm(dim=1, keepdim=True) + 1e-6)
            y = y / (y.norm(dim=1, keepdim=True) + 1e-6)
            total = total + (x - y).pow(2).sum(dim=1).mean()
        return total / len(fa)


class LPIPSDistance(nn.Module):
    def __init__(self, net, backbone: str = "vgg") -> None:
        super().__init__()
        self.net = net
        self.name = f"lpips-{backbone}"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(a, b).mean()


def _try_lpips():
    """LPIPS from the `lpips` package, only if its backbone weights are already on disk (no download): VGG
    as the LEGATO/GUIDE code (`lpips.LPIPS(net="vgg")`), else AlexNet."""
    try:
        import lpips  # noqa: F401
        import torch.hub
    except Exception:
        return None
    import os

    hub = os.path.join(torch.hub.get_dir(), "checkpoints")
    cached = os.listdir(hub) if os.path.isdir(hub) else []
    for backbone, prefix in (("vgg", "vgg16"), ("alex", "alexnet")):
        if any(n.startswith(prefix) for n in cached):
            try:
                import lpips

                return LPIPSDistance(lpips.LPIPS(net=backbone, verbose=False), backbone)
            except Exception:
                continue
    return None


def make_perceptual(choice: str, identity_model: nn.Module | None) -> nn.Module:
    """Pick the perceptual loss; `.name` says which one ran (it goes into metrics.json)."""
    if choice in ("auto", "lpips"):
        lp = _try_lpips()
        if lp is not None:
            return lp
        if choice == "lpips":
            raise InputError(
                "LPIPS needs the `lpips` package and its VGG16 (or AlexNet) weights in torch's hub cache; "
                "use --perceptual auto to fall back"
            )
    if choice in ("auto", "identity-features") and identity_model is not None and hasattr(
        identity_model, "feature_maps"
    ):
        return IdentityFeatureDistance(identity_model)
    if choice == "identity-features":
        raise InputError("this generator's identity model has no feature maps; use --perceptual multiscale-l1")
    if choice in ("auto", "multiscale-l1"):
        return MultiScaleL1()
    raise InputError(f"unknown perceptual loss {choice!r}; choose auto, lpips, identity-features or multiscale-l1")


def reference_identity_crop(images: torch.Tensor, size: int = 112) -> torch.Tensor:
    """The fixed crop of the LEGATO/GUIDE ID loss (pSp's `IDLoss`): resize to 256² (bilinear), keep rows
    35–222 and columns 32–219, average-pool to `size`². No landmarks: it assumes FFHQ framing."""
    x = F.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False)
    return F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], (size, size))


def check_reference_crop(identity_model: nn.Module) -> None:
    """The reference crop feeds the network a fixed crop (`embed_crops`), which only crop-based models have."""
    if not hasattr(identity_model, "embed_crops"):
        raise InputError(f"the reference identity crop (--preset reference, EG3D's default) needs a crop-based "
                         f"identity model (ArcFace, CurricularFace), not {type(identity_model).__name__}; use "
                         f"--identity-crop align")


def identity_loss(identity_model: nn.Module | None, a: torch.Tensor, b: torch.Tensor,
                  crop: str = "align") -> torch.Tensor:
    """1 − cos between identity embeddings (0 when the backend has no differentiable identity model).

    `crop="align"` lets the model frame the face (ArcFace models: the similarity transform to their
    five-point template); `"reference"` feeds the reference code's fixed crop (`reference_identity_crop`)
    to the network as it is, as the LEGATO/GUIDE loss does.
    """
    if identity_model is None:
        return a.new_zeros(())
    if crop == "reference":
        check_reference_crop(identity_model)
        size = getattr(identity_model, "crop_size", 112)
        ea = identity_model.embed_crops(reference_identity_crop(a, size))
        eb = identity_model.embed_crops(reference_identity_crop(b, size))
    else:
        ea, eb = identity_model.embed(a), identity_model.embed(b)
    return (1 - (ea * eb).sum(dim=1)).mean()
