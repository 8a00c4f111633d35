"""The inversion encoder of the SynthFaces world: photo → renderer parameters → the generator's `ws`.

It plays GOAE's role: a *photo* of a person becomes a latent to forget. A CNN regresses the 28 world
parameters (21 identity + 7 nuisance, in the units of `legato.synthfaces.params`) and the camera; `forward`
maps them through the generator's mapping network, `ws = G.mapping(params_to_z(p̂))`. `refine` then
optimises `ws` against the photo (pixel L1 + identity loss through `G.synthesis(ws, camera)`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from legato.errors import CheckpointError, InputError
from legato.synthfaces.identity_encoder import WEIGHTS_DIR, Backbone, BackboneConfig, read_metadata
from legato.synthfaces.params import MAX_PITCH, MAX_YAW, N_PARAMS, params_to_z

INVERTER_WEIGHTS = WEIGHTS_DIR / "inverter.safetensors"
FORMAT = "legato-synthfaces-inverter"
# Least `Inverter.reconstruction_match` for a photo to count as a face of this world. Measured with the
# cycle-3 generator: photos of the world ≥ 0.45 (300 photos of out-of-domain people; 1% below 0.62) and
# ≥ 0.79 (in-domain); plain colours 0, uniform noise ≤ 0.02, smooth noise ≤ 0.27 (8×8 blobs) and ≤ 0.41
# (4×4 blobs), LFW photos median 0.21 (docs/reference/synthfaces.md). A photo of the world must never be refused.
MIN_RECONSTRUCTION_MATCH = 0.3


class ParamRegressor(nn.Module):
    """images `[B, 3, 64, 64]` → raw outputs `[B, N_PARAMS + 2]` (parameters, then yaw/pitch normalised)."""

    def __init__(self, config: BackboneConfig | None = None):
        super().__init__()
        self.backbone = Backbone(config)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(self.backbone.config.features, N_PARAMS + 2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def split_outputs(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw regressor outputs → (parameters `[B, 28]`, camera `[B, 2]` in radians)."""
    scale = torch.tensor([MAX_YAW, MAX_PITCH], device=raw.device, dtype=raw.dtype)
    return raw[:, :N_PARAMS], raw[:, N_PARAMS:] * scale


class Inverter(nn.Module):
    """Photo → `ws` for the SynthFaces generator (`forward`), plus the parameters and camera behind it."""

    name = "synthfaces-inverter"

    def __init__(self, net: ParamRegressor, generator: nn.Module | None = None):
        super().__init__()
        self.net = net
        self.generator = generator

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(
                f"the inverter expects images [B, 3, H, W] in [-1, 1], got {tuple(images.shape)}"
            )
        return images

    def predict_all(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_outputs(self.net(self._check(images)))

    def predict_params(self, images: torch.Tensor) -> torch.Tensor:
        """World parameters `[B, 28]` (identity then nuisance); may lie outside [0, 1] for unusual people."""
        return self.predict_all(images)[0]

    def predict_camera(self, images: torch.Tensor) -> torch.Tensor:
        """Camera `[B, 2]` (yaw, pitch in radians) of each photo."""
        return self.predict_all(images)[1]

    def _require_generator(self) -> nn.Module:
        if self.generator is None:
            raise InputError("this inverter has no generator; pass one to load_inverter(generator=...)")
        return self.generator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images `[B, 3, 64, 64]` → ws `[B, num_ws, w_dim]` = G.mapping(params_to_z(p̂))."""
        gen = self._require_generator()
        return gen.mapping(params_to_z(self.predict_params(images)))

    def refine(
        self,
        images: torch.Tensor,
        ws: torch.Tensor | None = None,
        steps: int = 50,
        lr: float = 0.01,
        camera: torch.Tensor | None = None,
        id_weight: float = 0.5,
        identity_model: nn.Module | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Optimise `ws` so that `G.synthesis(ws, camera)` matches the photos: L1 + `id_weight`·(1 − cos).

        Only `ws` is optimised (the generator is untouched); camera defaults to `predict_camera(images)`.
        Deterministic (plain Adam, no noise). Returns the refined ws, detached.
        """
        gen = self._require_generator()
        images = self._check(images).detach()
        with torch.no_grad():
            if ws is None:
                ws = self.forward(images)
            if camera is None:
                camera = self.predict_camera(images)
        if identity_model is None and id_weight > 0:
            from legato.synthfaces.identity_encoder import load_identity_model

            identity_model = load_identity_model(device=images.device)
        target_emb = identity_model.embed(images).detach() if id_weight > 0 else None
        ws = ws.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([ws], lr=lr)
        it = range(int(steps))
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="refine")
        for _ in it:
            out = gen.synthesis(ws, camera)
            loss = F.l1_loss(out, images)
            if target_emb is not None:
                loss = loss + id_weight * (1.0 - (identity_model.embed(out) * target_emb).sum(1)).mean()
            (grad,) = torch.autograd.grad(loss, [ws])
            ws.grad = grad
            opt.step()
        return ws.detach()

    @torch.no_grad()
    def reconstruction_match(self, images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """How well `G.synthesis(ws, predicted camera)` explains each photo, `[B]` in [-1, 1]: the correlation
        of their pixels after removing each image's mean colour per channel (so a person of unusual colours
        still matches; a plain colour, with nothing left after its mean, scores 0)."""
        gen = self._require_generator()
        rec = gen.synthesis(ws, self.predict_camera(images))
        a = images - images.mean((2, 3), keepdim=True)
        b = rec - rec.mean((2, 3), keepdim=True)
        return (a * b).sum((1, 2, 3)) / (a.flatten(1).norm(dim=1) * b.flatten(1).norm(dim=1) + 1e-6)

    def check_photos(self, images: torch.Tensor, ws: torch.Tensor, names: list[str] | None = None) -> None:
        """Refuse photos that are not faces of this world: the generator's closest image must explain each
        photo (`reconstruction_match` ≥ `MIN_RECONSTRUCTION_MATCH`). A plain colour, noise or a landscape is
        far from anything the generator draws (measured values: docs/reference/synthfaces.md)."""
        match = self.reconstruction_match(images, ws)
        for i, m in enumerate(match.tolist()):
            if not m >= MIN_RECONSTRUCTION_MATCH:  # also catches NaN
                name = names[i] if names else f"photo {i}"
                raise InputError(
                    f"{name} is not a face of the SynthFaces world: the generator's closest image matches it "
                    f"{m:.2f} (faces of the world: at least {MIN_RECONSTRUCTION_MATCH}); give a SynthFaces photo, "
                    "or use an EG3D/StyleGAN2 generator (--generator) for real photos")

    def extra_repr(self) -> str:
        return f"generator={'attached' if self.generator is not None else 'none'}"


def save_inverter(net: ParamRegressor, path: str | Path, extra: dict | None = None) -> Path:
    """Write the regressor as safetensors with its config and training facts as metadata."""
    from safetensors.torch import save

    from legato.files import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {
        "format": FORMAT,
        "version": "1",
        "config": json.dumps(asdict(net.backbone.config)),
        "extra": json.dumps(extra or {}),
    }
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def load_param_regressor(path: str | Path | None = None) -> ParamRegressor:
    """The bare regressor (photo → parameters, camera) from a weights file (default: the shipped one)."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else INVERTER_WEIGHTS
    if not path.is_file():
        raise CheckpointError(
            f"inversion encoder weights not found at {path}; "
            "run `legato synthfaces train inverter` to create them"
        )
    try:
        meta = read_metadata(path)
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"cannot read inversion encoder weights {path}: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SynthFaces inversion encoder (format {meta.get('format')!r})")
    cfg = json.loads(meta["config"])
    cfg["widths"] = tuple(cfg["widths"])
    net = ParamRegressor(BackboneConfig(**cfg))
    missing, unexpected = net.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the inverter: missing {missing}, unexpected {unexpected}"
        )
    return net


def load_inverter(
    generator: nn.Module | None = None,
    device: str | torch.device = "cpu",
    path: str | Path | None = None,
    with_generator: bool = True,
) -> Inverter:
    """The shipped inversion encoder (eval mode, frozen) for `generator` (default: `load_generator()`).

    `with_generator=False` skips loading the default generator (then only `predict_params` /
    `predict_camera` work).
    """
    net = load_param_regressor(path)
    if generator is None and with_generator:
        from legato.synthfaces import load_generator

        generator = load_generator()
    inv = Inverter(net, generator)
    net.eval().requires_grad_(False)
    return inv.to(device)
