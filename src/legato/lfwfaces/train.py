"""The recipe of the `lfw-faces` generator: class-conditional flow matching on a diffusers `UNet2DModel`.

x_0 ~ N(0, I), x_1 an aligned LFW face, t ~ U(0, 1), x_t = (1 − t)·x_0 + t·x_1; the UNet (timestep 1000·t,
class embedding of the person) regresses v = x_1 − x_0. Each batch draws people uniformly, then one of
their training photos (mirrored half the time), so a person with 15 photos weighs as much as one with 400.
The label is replaced by the "nobody" class (index K) with probability `label_dropout`, which gives the
unconditional branch for guidance and the erasers' anchor. An exponential moving average of the weights is
what ships, in diffusers' folder format.

Training runs against a wall-clock budget and resumes: the full state (model, EMA, Adam, RNG) goes to
`<out>/train_state.pt` (not shipped), and the shipped folder is rewritten every `save_every` seconds.
`--extend-seconds` continues a finished run; starting from a shipped folder alone (no state file) restarts
Adam with its warm-up from the shipped EMA weights.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from legato.errors import InputError, TrainingError
from legato.files import atomic_directory, atomic_write_text
from legato.lfwfaces.data import FaceSetConfig, prepare
from legato.training_state import load_checkpoint, save_checkpoint

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"


@dataclass
class UNetShape:
    """A 4.3 M-parameter UNet: 0.8 s per batch of 32 on one CPU thread (docs/reference/lfw-faces.md)."""

    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 1
    attention_at: int = 3  # index of the one block with self-attention (4² at 32²)
    norm_num_groups: int = 16


@dataclass
class FaceFlowTrainConfig:
    seconds: float = 3600.0  # wall-clock budget of this cycle
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 200
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every_s: float = 300.0
    seed: int = 0
    shape: UNetShape = field(default_factory=UNetShape)


def build_unet(n_people: int, size: int, shape: UNetShape):
    from diffusers import UNet2DModel

    n = len(shape.block_out_channels)
    downs = tuple("AttnDownBlock2D" if i == shape.attention_at else "DownBlock2D" for i in range(n))
    ups = tuple("AttnUpBlock2D" if n - 1 - i == shape.attention_at else "UpBlock2D" for i in range(n))
    return UNet2DModel(sample_size=size, in_channels=3, out_channels=3,
                       block_out_channels=tuple(shape.block_out_channels), layers_per_block=shape.layers_per_block,
                       down_block_types=downs, up_block_types=ups, num_class_embeds=n_people + 1,
                       norm_num_groups=shape.norm_num_groups)


def velocity(unet, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The flow's velocity v(x, t, person) `[B, 3, s, s]`; t in [0, 1]."""
    return unet(x, t * 1000.0, class_labels=labels).sample


def flow_matching_loss(unet, x1: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    x0 = torch.randn(x1.shape, generator=g)
    t = torch.rand(x1.shape[0], generator=g)
    xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x1
    return F.mse_loss(velocity(unet, xt, t, labels), x1 - x0)


def _batch(x: torch.Tensor, y: torch.Tensor, by_person: list[torch.Tensor], cfg: FaceFlowTrainConfig,
           null: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    who = torch.randint(0, len(by_person), (cfg.batch_size,), generator=g)
    idx = torch.stack([by_person[p][torch.randint(0, len(by_person[p]), (1,), generator=g)][0] for p in who])
    xb, yb = x[idx].clone(), y[idx].clone()
    flip = torch.rand(cfg.batch_size, generator=g) < 0.5
    xb[flip] = xb[flip].flip(-1)
    drop = torch.rand(cfg.batch_size, generator=g) < cfg.label_dropout
    yb[drop] = null
    return xb, yb


def _lr(cfg: FaceFlowTrainConfig, step: int, start_step: int) -> float:
    return cfg.lr * min(1.0, (step - start_step + 1) / cfg.warmup)


def save_folder(ema, out: Path, meta: dict) -> None:
    """Write the EMA weights as a diffusers folder (config.json + diffusion_pytorch_model.safetensors, fp16)
    plus `legato_world.json` (people, resolution, recipe, steps)."""
    with atomic_directory(out) as tmp:
        ema.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        ema.to(torch.float32)
        atomic_write_text(Path(tmp) / "legato_world.json", json.dumps(meta, indent=1) + "\n")


def train(out: str | Path, cfg: FaceFlowTrainConfig | None = None, lfw_root: str | Path | None = None,
          state_dir: str | Path | None = None, init_from: str | Path | None = None, progress: bool = True,
          faces: FaceSetConfig = FaceSetConfig()) -> dict:
    """Train (or continue) the world's generator; writes the shipped folder `out` and returns its metadata.

    `state_dir` holds the resume state and log (default: `out` + `.train`). `init_from`: a shipped folder to
    start from when there is no state (the next cycle on a fresh machine).
    """
    from diffusers import UNet2DModel
    from tqdm import tqdm

    cfg = cfg or FaceFlowTrainConfig()
    if cfg.seconds <= 0 or cfg.batch_size < 1 or not cfg.lr > 0:
        raise InputError("--seconds, --batch-size and --lr must be positive")
    out = Path(out)
    state_dir = Path(state_dir) if state_dir else out.with_name(out.name + ".train")
    state_dir.mkdir(parents=True, exist_ok=True)
    data = prepare(lfw_root, faces, progress=progress)
    x, y = data.tensors(held_out=False)
    k = len(data.names)
    by_person = [torch.nonzero(y == p).flatten() for p in range(k)]
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    unet = build_unet(k, faces.size, cfg.shape)
    history: list[dict] = []
    if init_from is not None and not (state_dir / STATE_FILE).is_file():
        shipped = UNet2DModel.from_pretrained(str(init_from)).to(torch.float32)
        unet.load_state_dict(shipped.state_dict())
        meta0 = json.loads((Path(init_from) / "legato_world.json").read_text())
        history = meta0.get("cycles", [])
    ema = build_unet(k, faces.size, cfg.shape)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    stateful = {"unet": unet, "ema": ema, "opt": opt}
    step, elapsed = load_checkpoint(state_dir / STATE_FILE, stateful, {"data_g": g})
    if (state_dir / "history.json").is_file():
        history = json.loads((state_dir / "history.json").read_text())
    cycle_start_step, cycle_start_s = step, elapsed
    budget_end = elapsed + cfg.seconds
    t0 = time.time() - elapsed
    last_ckpt, loss_ema = time.time(), None
    bar = tqdm(desc="lfw-faces flow", disable=not progress, mininterval=10, unit="step")
    unet.train()
    while time.time() - t0 < budget_end:
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step, cycle_start_step)
        xb, yb = _batch(x, y, by_person, cfg, k, g)
        loss = flow_matching_loss(unet, xb, yb, g)
        if not torch.isfinite(loss):
            raise TrainingError(f"the flow-matching loss became {loss.item()} at step {step}; "
                                "lower --lr and continue with the same command (it resumes)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema_decay, (1 + step - cycle_start_step) / (10 + step - cycle_start_step))
            for pe, pm in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(pm, 1 - d)
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.99 * loss_ema + 0.01 * loss.item()
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss_ema:.4f}")
            with open(state_dir / LOG_FILE, "a") as f:
                f.write(json.dumps({"step": step, "loss_ema": round(loss_ema, 5),
                                    "elapsed_s": round(time.time() - t0, 1)}) + "\n")
        if time.time() - last_ckpt > cfg.checkpoint_every_s:
            save_checkpoint(state_dir / STATE_FILE, stateful, {"data_g": g}, step, time.time() - t0)
            _write(ema, out, data, faces, cfg, history, step, cycle_start_step, cycle_start_s, t0, loss_ema,
                   state_dir)
            last_ckpt = time.time()
    bar.close()
    save_checkpoint(state_dir / STATE_FILE, stateful, {"data_g": g}, step, time.time() - t0)
    return _write(ema, out, data, faces, cfg, history, step, cycle_start_step, cycle_start_s, t0, loss_ema,
                  state_dir, final=True)


def _write(ema, out, data, faces, cfg, history, step, cycle_start_step, cycle_start_s, t0, loss_ema, state_dir,
           final: bool = False) -> dict:
    cycle = {"steps": step - cycle_start_step, "seconds": round(time.time() - t0 - cycle_start_s, 1),
             "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed, "loss_ema": round(loss_ema or math.nan, 5),
             "finished": final}
    cycles = [*history, cycle]
    if final:
        atomic_write_text(state_dir / "history.json", json.dumps(cycles))
    meta = {"format": "legato-lfw-faces", "people": data.names, "size": faces.size, "faces": asdict(faces),
            "null_class": len(data.names), "total_steps": step, "shape": asdict(cfg.shape),
            "ema_decay": cfg.ema_decay, "label_dropout": cfg.label_dropout, "cycles": cycles,
            "n_train_photos": int((~data.held_out).sum()), "n_held_out_photos": int(data.held_out.sum())}
    save_folder(ema, out, meta)
    return meta
