"""How much of the world's small detail a generator carries: a feature probe and region errors.

The identity encoder's verdict (same person or not) rests mostly on the large features: head shape, skin,
hair. This module measures the small ones against the renderer, on latents the generator never trained on:
- a **feature probe**, a small CNN trained on renderer images only, reads three discrete features off an
  image: glasses (yes/no), beard (yes/no) and eye colour (brown / green / blue). Agreement is the fraction
  of latents where the probe reads the same value off the generator's image as off the render of the same
  parameters and camera;
- the **L1 error inside the eye and mouth regions** (`renderer.feature_regions`), against the whole-image L1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from legato.errors import CheckpointError
from legato.synthfaces import params as P

PROBE_WEIGHTS = Path(__file__).resolve().parent / "weights" / "feature_probe.safetensors"
FEATURES = {"glasses": ("no", "yes"), "beard": ("no", "yes"), "eye_color": ("brown", "green", "blue")}
# Label thresholds on the identity parameters: glasses fade in over 0.72–0.82 (half at 0.77); the beard
# grows from 0.68 and is clearly visible from ≈ 0.76; the iris goes brown → green → blue over [0, 1].
GLASSES_AT, BEARD_AT, EYE_COLOR_AT = 0.77, 0.76, (1 / 3, 2 / 3)
HELD_OUT_LATENT_SEED = 1_000_000  # latents for measurements are drawn from this seed on (training: seed 0…)


def feature_labels(identity: torch.Tensor) -> dict[str, torch.Tensor]:
    """Ground-truth discrete features of identities `[B, 21]` (in-domain values)."""
    idx = {name: i for i, name in enumerate(P.IDENTITY_PARAMS)}
    eye = identity[:, idx["eye_color"]]
    return {"glasses": (identity[:, idx["glasses"]] > GLASSES_AT).long(),
            "beard": (identity[:, idx["facial_hair"]] > BEARD_AT).long(),
            "eye_color": (eye > EYE_COLOR_AT[0]).long() + (eye > EYE_COLOR_AT[1]).long()}


class FeatureProbe(nn.Module):
    """images `[B, 3, 64, 64]` in [-1, 1] → logits per feature (`FEATURES`). About 0.1 M parameters."""

    def __init__(self) -> None:
        super().__init__()
        def conv(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())
        # full resolution first: the iris is about two pixels wide
        self.body = nn.Sequential(conv(3, 24, 1), conv(24, 32, 2), conv(32, 48, 2), conv(48, 64, 2), conv(64, 64, 2))
        self.heads = nn.ModuleDict({k: nn.Linear(64 * 2, len(v)) for k, v in FEATURES.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.body(images)
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return {k: head(x) for k, head in self.heads.items()}

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch: int = 100) -> dict[str, torch.Tensor]:
        """The predicted class index of every feature, `[B]` each."""
        outs = [self(images[i:i + batch]) for i in range(0, images.shape[0], batch)]
        return {k: torch.cat([o[k] for o in outs]).argmax(1) for k in FEATURES}


def _draw_latents(n: int, g: torch.Generator):
    """z, camera and the renderer's identity and nuisance parameters of `n` latents drawn from `g`."""
    z = torch.randn(n, P.Z_DIM, generator=g)
    cam = P.random_camera(n, generator=g)
    idn, nui = P.split(P.z_to_params(z))
    return z, cam, idn, nui


def _render_batch(n: int, g: torch.Generator):
    from legato.synthfaces.renderer import render

    z, cam, idn, nui = _draw_latents(n, g)
    return z, cam, idn, nui, render(idn, nui, cam)


def train_probe(out_path: str | Path = PROBE_WEIGHTS, steps: int = 1500, batch: int = 64, seed: int = 0,
                progress: bool = True) -> dict:
    """Train the probe on renderer images only (seeded latents below the held-out range); write safetensors."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    probe = FeatureProbe()
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=1e-4)
    t0 = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 3e-3 * min(1.0, (step + 1) / 50) * 0.5 * (1 + torch.cos(torch.tensor(step / steps * 3.14159)))
        _, _, idn, _, img = _render_batch(batch, g)
        img = img + 0.02 * torch.randn(img.shape, generator=g)  # a little sensor noise, nothing that blurs
        labels = feature_labels(idn)
        out = probe(img)
        loss = sum(F.cross_entropy(out[k], labels[k]) for k in FEATURES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step + 1) % 100 == 0:
            print(json.dumps({"step": step + 1, "loss": round(loss.item(), 4),
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    probe.eval()
    accuracy = probe_accuracy(probe)
    recipe = {"steps": steps, "batch": batch, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
              "accuracy_on_held_out_renders": accuracy}
    tensors = {k: v.detach().contiguous() for k, v in probe.state_dict().items()}
    out_path = Path(out_path)
    tmp = out_path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"recipe": json.dumps(recipe)})
    tmp.replace(out_path)
    return recipe


def probe_accuracy(probe: FeatureProbe, n: int = 1000, seed: int = HELD_OUT_LATENT_SEED + 7) -> dict:
    """The probe against the ground-truth labels, on `n` renders of held-out latents."""
    g = torch.Generator().manual_seed(seed)
    _, _, idn, _, img = _render_batch(n, g)
    pred, labels = probe.read(img), feature_labels(idn)
    return {k: round(float((pred[k] == labels[k]).float().mean()), 4) for k in FEATURES}


def load_probe(path: str | Path = PROBE_WEIGHTS) -> FeatureProbe:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    hint = "rebuild it with `python -m legato.synthfaces.detail train`"
    if not path.is_file():
        raise CheckpointError(f"SynthFaces feature probe {path} is missing; {hint}")
    probe = FeatureProbe()
    try:
        probe.load_state_dict(load_file(str(path)))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"SynthFaces feature probe {path} is unreadable ({e}); {hint}") from e
    return probe.eval().requires_grad_(False)


def measure_detail(generator=None, n: int = 500, seed: int = 0, batch: int = 50, probe: FeatureProbe | None = None,
                   identity_model=None) -> dict:
    """Generator vs renderer on `n` held-out latents and random cameras: identity match, feature agreement,
    L1 inside the eye and mouth regions and over the whole image."""
    from legato.synthfaces.generator import load_generator
    from legato.synthfaces.identity_encoder import load_identity_model
    from legato.synthfaces.renderer import feature_regions

    gen = generator if generator is not None else load_generator()
    probe = probe if probe is not None else load_probe()
    idm = identity_model if identity_model is not None else load_identity_model()
    g = torch.Generator().manual_seed(HELD_OUT_LATENT_SEED + seed)
    agree = {k: 0 for k in FEATURES}
    sums = {"eyes": 0.0, "mouth": 0.0, "eyes_px": 0.0, "mouth_px": 0.0, "image": 0.0}
    cos_all = []
    with torch.no_grad():
        for i in range(0, n, batch):
            b = min(batch, n - i)
            z, cam, idn, nui, real = _render_batch(b, g)
            fake = gen(z, cam).clamp(-1, 1)
            read_f, read_r = probe.read(fake), probe.read(real)
            for k in FEATURES:
                agree[k] += int((read_f[k] == read_r[k]).sum())
            err = (fake - real).abs().mean(1)  # [B, H, W]
            regions = feature_regions(idn, nui, cam)
            for name in ("eyes", "mouth"):
                sums[name] += float((err * regions[name]).sum())
                sums[f"{name}_px"] += float(regions[name].sum())
            sums["image"] += float(err.mean((1, 2)).sum())
            cos_all.append((idm.embed(fake) * idm.embed(real)).sum(1))
    cos = torch.cat(cos_all)
    return {"n": n, "identity_match_rate": round(float((cos >= idm.threshold).float().mean()), 4),
            "identity_cos_mean": round(float(cos.mean()), 4),
            **{f"agreement_{k}": round(agree[k] / n, 4) for k in FEATURES},
            "l1_eyes": round(sums["eyes"] / max(sums["eyes_px"], 1.0), 4),
            "l1_mouth": round(sums["mouth"] / max(sums["mouth_px"], 1.0), 4),
            "l1_image": round(sums["image"] / n, 4)}


# smile bands of the mouth-error breakdown: the renderer bends the mouth with the smile and opens it (teeth)
# from smile 0.6 on, fully by 1.0 (`renderer.render`)
SMILE_BANDS = {"closed (smile < 0.6)": (-1.0, 0.6), "opening (0.6–0.8)": (0.6, 0.8), "open (≥ 0.8)": (0.8, 2.0)}


# rings around the lips and teeth for the split of the mouth error by distance (pixels, Chebyshev)
MOUTH_RINGS = {"lips and teeth": (0, 0), "1 px around": (1, 1), "2 px around": (2, 2), "3–4 px around": (3, 4),
               "farther": (5, 99)}


def _ring_masks(feature: torch.Tensor) -> dict[str, torch.Tensor]:
    """`feature` `[B, H, W]` in [0, 1] → soft masks of the pixels at each `MOUTH_RINGS` distance from it."""
    grown = {0: feature}
    for r in (1, 2, 4):
        grown[r] = F.max_pool2d(feature[:, None], 2 * r + 1, 1, r)[:, 0]
    out = {}
    for name, (lo, hi) in MOUTH_RINGS.items():
        inner = grown[lo - 1] if lo > 0 else torch.zeros_like(feature)
        outer = grown[hi] if hi in grown else torch.ones_like(feature)
        out[name] = (outer - inner).clamp(0.0, 1.0)
    return out


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.arange(-4, 5, dtype=x.dtype)
    k = torch.exp(-k ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    kernel = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 9, 9)
    return F.conv2d(F.pad(x, (4, 4, 4, 4), mode="replicate"), kernel, groups=x.shape[1])


def mouth_errors(generator=None, n: int = 500, seed: int = 0, batch: int = 50) -> dict:
    """Where the mouth-region L1 comes from: the same held-out latents as `measure_detail`, the error split by
    how open the rendered mouth is, by beard and by distance from the lips and teeth, beside the error that
    a degraded render alone would have (`render_degraded`: blurred, or drawn at 32² and upsampled; floors that
    say how sharp a generator must be to reach a given mouth error), with the per-latent errors and images
    for pictures (`fake`, `real`, `mouth` masks; the caller drops them before printing)."""
    from legato.synthfaces.generator import load_generator
    from legato.synthfaces.renderer import MASK_NAMES, feature_regions, render_with_masks

    gen = generator if generator is not None else load_generator()
    g = torch.Generator().manual_seed(HELD_OUT_LATENT_SEED + seed)
    fakes, reals, masks, smiles, beards, mouth_features = [], [], [], [], [], []
    lips_teeth = [MASK_NAMES.index("lips"), MASK_NAMES.index("teeth")]
    with torch.no_grad():
        for i in range(0, n, batch):
            z, cam, idn, nui = _draw_latents(min(batch, n - i), g)
            real, feature_masks = render_with_masks(idn, nui, cam)  # the render and its masks in one pass
            fakes.append(gen(z, cam).clamp(-1, 1))
            reals.append(real)
            masks.append(feature_regions(idn, nui, cam)["mouth"])
            mouth_features.append(feature_masks[:, lips_teeth].amax(1))
            smiles.append(nui[:, 0])
            beards.append(idn[:, P.IDENTITY_PARAMS.index("facial_hair")])
    fake, real, mask = torch.cat(fakes), torch.cat(reals), torch.cat(masks)
    smile, beard = torch.cat(smiles), torch.cat(beards)
    err_map = (fake - real).abs().mean(1)
    err = err_map * mask
    total, pixels = err.sum((1, 2)), mask.sum((1, 2))

    def pooled(sel: torch.Tensor) -> dict:
        return {"n": int(sel.sum()), "l1_mouth": round(float(total[sel].sum() / pixels[sel].sum().clamp(min=1)), 4),
                "share_of_error": round(float(total[sel].sum() / total.sum()), 3)}

    def by_pixels(weight: torch.Tensor) -> dict:
        w = weight * mask
        return {"pixels_per_image": round(float(w.sum()) / n, 1),
                "l1": round(float((err_map * w).sum() / w.sum().clamp(min=1e-6)), 4),
                "share_of_error": round(float((err_map * w).sum() / total.sum()), 3)}

    def region_l1(image: torch.Tensor) -> float:
        return round(float(((image - real).abs().mean(1) * mask).sum() / pixels.sum()), 4)

    at_32 = F.interpolate(F.interpolate(real, scale_factor=0.5, mode="bilinear", antialias=True),
                          scale_factor=2, mode="bilinear")
    return {"n": n, "l1_mouth": pooled(torch.ones_like(smile, dtype=torch.bool))["l1_mouth"],
            "by_smile": {k: pooled((smile >= lo) & (smile < hi)) for k, (lo, hi) in SMILE_BANDS.items()},
            "by_beard": {"beard": pooled(beard >= BEARD_AT), "no beard": pooled(beard < BEARD_AT)},
            "by_distance_from_lips": {k: by_pixels(m) for k, m in _ring_masks(torch.cat(mouth_features)).items()},
            "render_degraded": {"blurred, sigma 0.5 px": region_l1(_blur(real, 0.5)),
                                "blurred, sigma 1 px": region_l1(_blur(real, 1.0)),
                                "drawn at 32x32, upsampled": region_l1(at_32)},
            "per_latent": (total / pixels.clamp(min=1)), "fake": fake, "real": real, "mouth": mask}


if __name__ == "__main__":
    import sys

    # python -m legato.synthfaces.detail train [STEPS]  |  python -m legato.synthfaces.detail measure [GENERATOR]
    if sys.argv[1:2] == ["train"]:
        print(json.dumps(train_probe(steps=int(sys.argv[2]) if len(sys.argv) > 2 else 1500), indent=1))
    else:
        from legato.synthfaces.generator import load_generator

        gen = load_generator(path=sys.argv[2]) if len(sys.argv) > 2 else None
        print(json.dumps(measure_detail(gen), indent=1))
