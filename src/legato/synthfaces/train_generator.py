"""The recipe that trains the SynthFaces generator to reproduce the renderer (regression, no GAN).

Every batch is rendered on the fly: z ~ N(0, I), parameters p = Φ(z), a random camera, target
render(p, camera). Loss: L1 on the image plus L1 on 2× and 4× downsampled images (the coarse terms teach
layout fast). Adam with a warm-up and a cosine decay over a wall-clock budget, so the recipe fits the
time it is given. Checkpoints every few minutes; a rerun with the same output resumes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from legato.errors import InputError
from legato.synthfaces import params as P
from legato.synthfaces.generator import GeneratorConfig, SynthFacesGenerator, config_from_json, save_generator
from legato.synthfaces.renderer import MASK_NAMES, feature_regions, render, render_with_masks
from legato.training_state import read_state, write_state

DEFAULT_SECONDS = 3300  # fits the one-hour budget on a 2-core CPU, with time to spare for w_avg and saving


# the few-pixel features whose own pixels `feature_weight` weighs up (≈ 3% of an image together)
WEIGHTED_FEATURES = ("iris", "pupil", "brow", "lips", "glasses")
# the features whose mean colour `colour_weight` compares (eye colour, lip colour, whether glasses are drawn)
COLOUR_FEATURES = ("iris", "lips", "glasses")
# the features whose outline `outline_weight` holds: the colour just outside them must be the render's too
OUTLINE_FEATURES = ("lips", "teeth", "glasses")


def _batch(n: int, g: torch.Generator, region_weight: float = 0.0, masks: bool = False,
           feature_weight: float = 0.0, mouth_weight: float = 0.0):
    """z, camera, the target render, its per-pixel loss weight `[n, 1, 64, 64]` (None without region,
    mouth or feature weight) and the renderer's feature masks `[n, K, 64, 64]` (None unless asked)."""
    z = torch.randn(n, P.Z_DIM, generator=g)
    p = P.z_to_params(z)
    cam = P.random_camera(n, generator=g)
    idn, nui = P.split(p)
    weight = None
    if region_weight or mouth_weight:
        regions = feature_regions(idn, nui, cam)
        weight = (1.0 + region_weight * torch.maximum(regions["eyes"], regions["mouth"])
                  + mouth_weight * regions["mouth"])[:, None]
    if masks or feature_weight:
        image, feature_masks = render_with_masks(idn, nui, cam)
        if feature_weight:
            picked = feature_masks[:, [MASK_NAMES.index(k) for k in WEIGHTED_FEATURES]].amax(1, keepdim=True)
            weight = (1.0 if weight is None else weight) + feature_weight * picked
        return z, cam, image, weight, feature_masks if masks else None
    return z, cam, render(idn, nui, cam), weight, None


def _mask_head(gen: SynthFacesGenerator) -> torch.nn.Module:
    channels = gen.synthesis_network.b64.conv1.out_channels
    return torch.nn.Conv2d(channels, len(MASK_NAMES), kernel_size=1)


def _forward_with_last_features(gen: SynthFacesGenerator, z, cam):
    """The images and the last (64²) block's feature map, from one pass."""
    captured = {}
    handle = gen.synthesis_network.b64.register_forward_hook(lambda m, i, out: captured.__setitem__("x", out[0]))
    try:
        img = gen(z, cam)
    finally:
        handle.remove()
    return img, captured["x"]


class PatchDiscriminator(torch.nn.Module):
    """A small patch critic for the recipe's adversarial term: three strided 4×4 convolutions and a 3×3 head
    give a 8×8 map of logits, each judging a ≈ 30-pixel patch (an eye with its brow and glasses rim).

    Regression alone averages a thin feature whose position the network is not yet sure of into a smooth
    patch (a misplaced rim costs more L1 than a missing one); a critic that has seen renders penalises the
    missing feature instead. Spectral normalisation keeps it Lipschitz, so the term cannot blow up.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        sn = torch.nn.utils.parametrizations.spectral_norm
        c = channels
        self.net = torch.nn.Sequential(
            sn(torch.nn.Conv2d(3, c, 4, 2, 1)), torch.nn.LeakyReLU(0.2),
            sn(torch.nn.Conv2d(c, 2 * c, 4, 2, 1)), torch.nn.LeakyReLU(0.2),
            sn(torch.nn.Conv2d(2 * c, 4 * c, 4, 2, 1)), torch.nn.LeakyReLU(0.2),
            sn(torch.nn.Conv2d(4 * c, 1, 3, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MOUTH_CROP = 20  # pixels of the 64² image a mouth crop spans (the mouth region is ≈ 10–18 wide)


def mouth_centres(z: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """The centre `[B, 2]` (x, y in pixel indices of the 64² image) of each latent's mouth region."""
    regions = feature_regions(*P.split(P.z_to_params(z)), cam)["mouth"]  # [B, 64, 64]
    ys, xs = torch.meshgrid(torch.arange(regions.shape[1], dtype=torch.float32),
                            torch.arange(regions.shape[2], dtype=torch.float32), indexing="ij")
    area = regions.sum((1, 2)).clamp_min(1.0)
    centre = torch.stack([(regions * xs).sum((1, 2)) / area, (regions * ys).sum((1, 2)) / area], 1)
    # a mouth the yaw has hidden (empty region) is cropped at the image's centre, where its crop harms nothing
    empty = regions.sum((1, 2)) == 0
    centre[empty] = (regions.shape[-1] - 1) / 2
    return centre


def mouth_crops(images: torch.Tensor, centres: torch.Tensor, size: int = MOUTH_CROP, out: int = 32) -> torch.Tensor:
    """Crops `[B, C, out, out]` of `size` × `size` pixels around `centres` `[B, 2]` (x, y pixel indices),
    resampled bilinearly, so the critic's gradient reaches the generator's pixels."""
    b, c, h, w = images.shape
    theta = torch.zeros(b, 2, 3, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = size / w, size / h
    theta[:, 0, 2] = (centres[:, 0] + 0.5) / w * 2 - 1
    theta[:, 1, 2] = (centres[:, 1] + 0.5) / h * 2 - 1
    grid = F.affine_grid(theta, [b, c, out, out], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _critic_and_optimiser(wanted: bool, ck: dict | None, key: str):
    """A `PatchDiscriminator` and its Adam, restored from checkpoint entries `key` / `key`_opt when `ck` has
    them; (None, None) when neither this command nor the checkpoint uses that critic."""
    held = ck is not None and key in ck
    if not (wanted or held):
        return None, None
    critic = PatchDiscriminator()
    opt = torch.optim.Adam(critic.parameters(), lr=4e-4, betas=(0.0, 0.99))
    if held:
        critic.load_state_dict(ck[key])
        opt.load_state_dict(ck[f"{key}_opt"])
    return critic, opt


def _running_mean(previous: float | None, value: float) -> float:
    """The logs' exponential running mean (the first value starts it)."""
    return value if previous is None else 0.98 * previous + 0.02 * value


def critic_step(critic: torch.nn.Module, critic_opt: torch.optim.Optimizer, real: torch.Tensor,
                fake: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One hinge-loss step of `critic` (renders vs the generator's images), then the generator's term scored
    by the updated critic, whose parameters take no gradient from it. Returns (term, critic loss)."""
    critic.requires_grad_(True)
    d_loss = F.relu(1.0 - critic(real)).mean() + F.relu(1.0 + critic(fake.detach())).mean()
    critic_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    critic_opt.step()
    critic.requires_grad_(False)
    return -critic(fake).mean(), d_loss.item()


def mask_loss(logits: torch.Tensor, masks: torch.Tensor, positive_weight: float = 10.0) -> torch.Tensor:
    """Binary cross-entropy against the soft masks, with feature pixels (≈ 1% of the image) weighted up."""
    weight = 1.0 + (positive_weight - 1.0) * masks
    return F.binary_cross_entropy_with_logits(logits, masks, weight=weight)


def colour_loss(fake: torch.Tensor, real: torch.Tensor, masks: torch.Tensor, min_pixels: float = 1.0) -> torch.Tensor:
    """L1 between the mean colours of `fake` and `real` inside each renderer mask `[B, K, H, W]`.

    Each feature present in a sample (at least `min_pixels` of coverage) counts once, however few pixels it
    has: a two-pixel iris of the wrong hue costs as much as a wrong lip colour. Per-pixel L1 weighs it by
    its area, and where the generator's iris sits a pixel off, L1's cheapest answer is skin-coloured.
    """
    area = masks.sum((2, 3))  # [B, K]
    present = area >= min_pixels
    if not present.any():
        return fake.sum() * 0.0
    def means(img):
        return torch.einsum("bchw,bkhw->bkc", img, masks) / area.clamp_min(1e-6)[..., None]
    diff = (means(fake) - means(real)).abs().mean(-1)  # [B, K]
    return diff[present].mean()


def outline_loss(fake: torch.Tensor, real: torch.Tensor, masks: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """`colour_loss` inside each mask `[B, K, H, W]` and inside a ring `radius` pixels wide just outside it.

    The colour term alone is met by painting a feature wider than it is (a pink patch holds the lips' mean
    colour wherever the lips fall); the ring, skin in the render, charges for every pixel of paint that
    spills over, once per feature like the colour term, so only a feature of the render's own size and
    place meets both.
    """
    ring = (F.max_pool2d(masks, 2 * radius + 1, 1, radius) - masks).clamp(0.0, 1.0)
    return colour_loss(fake, real, torch.cat([masks, ring], 1))


def _image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def loss_fn(fake: torch.Tensor, real: torch.Tensor, edge_weight: float = 0.0,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """L1 at 64², 32², 16²; with `edge_weight` also L1 between the images' finite differences at 64².

    The edge term weighs the few-pixel features (eyes, brows, glasses rims) that plain L1 leaves blurry.
    `weight` `[B, 1, H, W]` (mean ≈ 1) weighs the 64² terms per pixel: the recipe's third cycle puts more
    weight on the eye and mouth regions, a few percent of the pixels that carry much of a face.
    """
    def mean(x, w):
        return (x * w).mean() if w is not None else x.mean()

    loss = mean((fake - real).abs(), weight)
    if edge_weight:
        for axis, (df, dr) in enumerate(zip(_image_gradients(fake), _image_gradients(real), strict=True)):
            w = None if weight is None else (weight[..., :, 1:] if axis == 0 else weight[..., 1:, :])
            loss = loss + edge_weight * mean((df - dr).abs(), w)
    for _ in range(2):
        fake, real = F.avg_pool2d(fake, 2), F.avg_pool2d(real, 2)
        loss = loss + (fake - real).abs().mean()
    return loss


def base_recipe(path) -> dict:
    """The recipe metadata stored in a generator file (what a grown network started from)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("recipe", "{}"))


def compute_w_avg(gen: SynthFacesGenerator, n: int = 10_000, seed: int = 123) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return gen.mapping_network(torch.randn(n, gen.z_dim, generator=g)).mean(0)


def train(out_path, seed: int = 0, steps: int | None = None, log_path=None, seconds: float | None = None,
          batch_size: int = 16, lr: float = 2e-3, threads: int | None = None, progress: bool = True,
          extend_seconds: float | None = None, extend_lr: float = 1e-3, edge_weight: float = 0.0,
          grow_from=None, config: GeneratorConfig | None = None, region_weight: float = 0.0,
          mask_weight: float = 0.0, adversarial_weight: float = 0.0, feature_weight: float = 0.0,
          colour_weight: float = 0.0, outline_weight: float = 0.0, mouth_weight: float = 0.0,
          mouth_critic_weight: float = 0.0) -> dict:
    """Train from scratch (or resume from `out_path`.ckpt) and write the weights to `out_path`.

    The schedule runs for `steps` steps when given, else for `seconds` of wall time (default 3,300 s).
    `extend_seconds` continues a checkpoint whose schedule has finished with a second cycle (warm-up to
    `extend_lr`, cosine to 0 over that many more seconds); the recipe metadata lists both cycles.
    `grow_from` (a generator .safetensors) starts a fresh run from that network grown to `config`
    (`grow.grow_generator`: the same images at the start), with `lr`, `edge_weight` and the budget given.
    `region_weight` adds that much loss weight inside the eye and mouth regions (0: none). `mask_weight`
    adds an auxiliary head (training only, not saved in the generator file): a 1×1 conv from the 64² block's
    features to the renderer's feature masks (`renderer.MASK_NAMES`), trained with a balanced binary cross-
    entropy, so the features learn *where* eyes, irises, brows, lips and glasses are even where their colour
    contrast, and so their share of the pixel loss, is small. `adversarial_weight` adds a hinge-loss patch
    critic (`PatchDiscriminator`, trained beside the generator, kept in the checkpoint only) with that weight
    on the generator's side. `feature_weight` adds that much loss weight on the pixels of the irises, pupils,
    brows, lips and glasses rims themselves (`WEIGHTED_FEATURES`, from the renderer's masks): the region
    weight covers a whole eye box, in which a two-pixel iris is still a small share of the loss.
    `colour_weight` adds `colour_loss` on the irises, lips and glasses rims (`COLOUR_FEATURES`): their mean
    colour, each feature counted once per image whatever its size. `outline_weight` adds `outline_loss` on the
    lips, teeth and glasses rims (`OUTLINE_FEATURES`): their mean colour and that of a 2-pixel ring around
    them, so a feature cannot be painted wider than the render draws it. `mouth_weight` adds that much more
    loss weight inside the mouth region alone (on top of `region_weight`): the mouth region is the detail
    measure furthest from its goal, and most of its error is not in the lips but in the skin, nose tip and
    beard edge around them (`docs/results/synthfaces-generator.md`), which only a weight on the whole region reaches.
    `mouth_critic_weight` adds a second patch critic that sees only a `MOUTH_CROP`-pixel crop around each
    mouth, upsampled to 32² (`mouth_crops`), so its whole judgement is spent on lips, teeth and the skin
    around them; the image critic's 30-pixel patches weigh a mouth of a few pixels as little as the cheek.
    """
    # the loss terms this command runs with, recorded in the cycle it starts
    terms = {"edge_weight": edge_weight, "region_weight": region_weight, "mask_weight": mask_weight,
             "adversarial_weight": adversarial_weight, "feature_weight": feature_weight,
             "colour_weight": colour_weight, "outline_weight": outline_weight, "mouth_weight": mouth_weight,
             "mouth_critic_weight": mouth_critic_weight}
    wrong = [f"{name.removesuffix('_weight')} {value}" for name, value in terms.items() if not value >= 0]
    if wrong:  # a negative weight would reward the error it names; refuse before an hour is spent on it
        raise InputError(f"loss weights must be ≥ 0 (got {', '.join(wrong)})")
    out_path = Path(out_path)
    ckpt_path = out_path.with_suffix(".ckpt.pt")
    log_path = Path(log_path) if log_path else out_path.with_suffix(".log.jsonl")
    if threads:
        torch.set_num_threads(threads)
    budget = float(seconds if seconds is not None else DEFAULT_SECONDS)
    torch.manual_seed(seed)
    grown_from = None
    if grow_from is not None and not ckpt_path.is_file():
        from legato.synthfaces.generator import load_generator
        from legato.synthfaces.grow import grow_generator

        base = load_generator(path=grow_from)
        grown_from = {"file": Path(grow_from).name, "recipe": base_recipe(grow_from)}
        gen = grow_generator(base, config or base.config, seed=seed).requires_grad_(True).train()
    else:
        gen = SynthFacesGenerator(config or GeneratorConfig())
    ck = read_state(ckpt_path)
    if ck is not None and ck.get("config"):  # the network this run trains (a grown one differs from the default)
        gen = SynthFacesGenerator(config_from_json(ck["config"]))
    aux = _mask_head(gen) if mask_weight or (ck is not None and "aux" in ck) else None
    params = list(gen.parameters()) + (list(aux.parameters()) if aux is not None else [])
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    critic, critic_opt = _critic_and_optimiser(bool(adversarial_weight), ck, "critic")
    mouth_critic, mouth_critic_opt = _critic_and_optimiser(bool(mouth_critic_weight), ck, "mouth_critic")
    rng = torch.Generator().manual_seed(seed)
    step, elapsed_before = 0, 0.0
    cycles: list[dict] = []
    if ck is not None:
        gen.load_state_dict(ck["model"])
        if aux is not None and "aux" in ck:
            aux.load_state_dict(ck["aux"])
        opt.load_state_dict(ck["opt"])
        rng.set_state(ck["rng"])
        step, elapsed_before = int(ck["step"]), float(ck["elapsed"])
        cycles = json.loads(ck.get("cycles") or "[]")
    if extend_seconds is not None and step == 0:
        raise ValueError(f"extend_seconds continues a finished run, but {ckpt_path} does not exist")
    if not cycles:  # a fresh run, or a checkpoint written before cycles were recorded (first cycle, no edge term)
        first_edge = 0.0 if extend_seconds is not None else edge_weight
        cycles = [{"start_step": 0, "start_seconds": 0.0, "seconds": budget, "lr": lr,
                   **terms, "edge_weight": first_edge}]
        if grown_from is not None:
            cycles[0]["grown_from"] = grown_from
    last = cycles[-1]
    last_done = last.get("finished") or elapsed_before - last["start_seconds"] >= last["seconds"]
    if extend_seconds is not None and last_done:
        # the last cycle has finished: the next one extends it (a resumed extension is still running)
        cycles.append({"start_step": step, "start_seconds": round(elapsed_before, 1), "seconds": float(extend_seconds),
                       "lr": extend_lr, **terms, "extension": True})
    cycle = cycles[-1]
    t0 = time.perf_counter()
    last_ckpt = t0

    def elapsed():
        return elapsed_before + time.perf_counter() - t0

    def fraction():
        if steps:
            return step / steps
        return (elapsed() - cycle["start_seconds"]) / cycle["seconds"]

    def save_ckpt():
        state = {"model": gen.state_dict(), "opt": opt.state_dict(), "rng": rng.get_state(), "step": step,
                 "elapsed": elapsed(), "cycles": json.dumps(cycles), "config": json.dumps(asdict(gen.config))}
        if aux is not None:
            state["aux"] = aux.state_dict()
        for key, net, net_opt in (("critic", critic, critic_opt), ("mouth_critic", mouth_critic, mouth_critic_opt)):
            if net is not None:
                state[key], state[f"{key}_opt"] = net.state_dict(), net_opt.state_dict()
        write_state(ckpt_path, state)

    log = open(log_path, "a")  # noqa: SIM115
    ema = d_ema = mouth_d_ema = None
    mask_term_ema: dict[str, float] = {}
    try:
        while fraction() < 1.0:
            f = fraction()
            warm = min(1.0, (step - cycle["start_step"]) / 200)
            for group in opt.param_groups:
                group["lr"] = cycle["lr"] * warm * 0.5 * (1 + math.cos(math.pi * min(f, 1.0)))
            masks_w, colour_w = cycle.get("mask_weight", 0.0), cycle.get("colour_weight", 0.0)
            outline_w = cycle.get("outline_weight", 0.0)
            z, cam, target, weight, masks = _batch(batch_size, rng, cycle.get("region_weight", 0.0),
                                                   bool(masks_w or colour_w or outline_w),
                                                   cycle.get("feature_weight", 0.0), cycle.get("mouth_weight", 0.0))
            if masks_w:
                fake, feat64 = _forward_with_last_features(gen, z, cam)
                loss = loss_fn(fake, target, cycle["edge_weight"], weight) + masks_w * mask_loss(aux(feat64), masks)
            else:
                fake = gen(z, cam)
                loss = loss_fn(fake, target, cycle["edge_weight"], weight)
            regression = loss.item()  # logged without the colour and adversarial terms, comparable across cycles
            for name, term, features, term_w in (("colour_loss", colour_loss, COLOUR_FEATURES, colour_w),
                                                 ("outline_loss", outline_loss, OUTLINE_FEATURES, outline_w)):
                if term_w:  # a term on the renderer's masks of `features`; its running mean goes to the log
                    value = term(fake, target, masks[:, [MASK_NAMES.index(k) for k in features]])
                    loss = loss + term_w * value
                    mask_term_ema[name] = _running_mean(mask_term_ema.get(name), value.item())
            adv_w = cycle.get("adversarial_weight", 0.0)
            if adv_w:
                g_adv, d_loss = critic_step(critic, critic_opt, target, fake)
                loss = loss + adv_w * g_adv
                d_ema = _running_mean(d_ema, d_loss)
            mouth_adv_w = cycle.get("mouth_critic_weight", 0.0)
            if mouth_adv_w:
                centres = mouth_centres(z, cam)
                g_adv, d_loss = critic_step(mouth_critic, mouth_critic_opt, mouth_crops(target, centres),
                                            mouth_crops(fake, centres))
                loss = loss + mouth_adv_w * g_adv
                mouth_d_ema = _running_mean(mouth_d_ema, d_loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            ema = _running_mean(ema, regression)
            if step % 25 == 0:
                rec = {"step": step, "loss": round(ema, 5), "lr": opt.param_groups[0]["lr"],
                       "seconds": round(elapsed(), 1),
                       "images_per_s": round(step * batch_size / max(elapsed(), 1e-6), 1)}
                if d_ema is not None:
                    rec["critic_loss"] = round(d_ema, 4)
                if mouth_d_ema is not None:
                    rec["mouth_critic_loss"] = round(mouth_d_ema, 4)
                rec.update({name: round(v, 5) for name, v in mask_term_ema.items()})
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if progress:
                    print(json.dumps(rec), flush=True)
            if time.perf_counter() - last_ckpt > 180:
                save_ckpt()
                last_ckpt = time.perf_counter()
        cycle["finished"] = True  # in the checkpoint: the next --extend-seconds starts a new cycle
    finally:
        save_ckpt()
        log.close()
    gen.w_average.copy_(compute_w_avg(gen))
    recipe = {"seed": seed, "steps": step, "batch_size": batch_size, "lr": lr, "seconds": round(elapsed(), 1),
              "loss_ema": ema, "threads": torch.get_num_threads(), "cycles": cycles}
    save_generator(gen, out_path, recipe=recipe)
    return recipe


if __name__ == "__main__":
    import sys

    # python -m legato.synthfaces.train_generator OUT [SECONDS [THREADS [EXTEND_SECONDS EDGE_WEIGHT]]]
    out = sys.argv[1]
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else None
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    extend = float(sys.argv[4]) if len(sys.argv) > 4 else None
    edge = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    print(train(out, seconds=secs, threads=threads, extend_seconds=extend, edge_weight=edge))
