"""The project's recipe for the digits flow: conditional flow matching with straight paths.

x_0 ~ N(0, I), x_1 a digit, t ~ U(0, 1), x_t = (1 − t)·x_0 + t·x_1; the UNet regresses v = x_1 − x_0.
Labels are replaced by the "no class" token with probability `label_dropout`. An exponential moving average
of the weights is what gets shipped. Training checkpoints every `checkpoint_every` steps and resumes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from legato.errors import TrainingError
from legato.files import atomic_write_text
from legato.training_state import read_state, write_state


@dataclass
class FlowTrainConfig:
    """Defaults: the recipe that produced the shipped `digits_flow.safetensors`."""

    steps: int = 2400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 100
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    seed: int = 0


def flow_matching_loss(
    model: nn.Module,
    x1: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator | None = None,
    reduce: bool = True,
) -> torch.Tensor:
    """Mean squared error of the predicted velocity against x_1 − x_0 (per sample if `reduce` is False)."""
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device)
    t = torch.rand(x1.shape[0], generator=generator, device=x1.device)
    xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x1
    err = (model(xt, t, y) - (x1 - x0)).pow(2).flatten(1).mean(dim=1)
    return err.mean() if reduce else err


def _lr_at(step: int, cfg: FlowTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_flow(
    out_path: str | Path,
    config: FlowTrainConfig | None = None,
    unet_config=None,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train the digits flow on the training split and write the EMA weights to `out_path`.

    `work_dir` holds `checkpoint.pt` and `log.jsonl`; an existing checkpoint there is resumed.
    Returns a summary dict (steps, final loss, wall time).
    """
    from legato.flows.data import load_split
    from legato.flows.unet import FlowUNet, UNetConfig
    from legato.flows.weights import save_weights

    cfg = config or FlowTrainConfig()
    ucfg = unet_config or UNetConfig()
    out_path = Path(out_path)
    work = Path(work_dir) if work_dir is not None else out_path.with_suffix(".work")
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = work / "checkpoint.pt", work / "log.jsonl"

    torch.manual_seed(cfg.seed)
    data = load_split()
    x_all, y_all = data.train_images, data.train_labels
    model = FlowUNet(ucfg)
    ema = FlowUNet(ucfg)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, elapsed = 0, 0.0
    state = read_state(ckpt_path)
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["generator"])
        start, elapsed = int(state["step"]), float(state["elapsed"])

    t0 = time.time() - elapsed
    from rich.progress import Progress

    loss_avg = None
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("training the digits flow", total=cfg.steps, completed=start)
        for step in range(start, cfg.steps):
            loss_avg = _train_step(model, ema, opt, cfg, step, x_all, y_all, gen, loss_avg)
            bar.update(task, advance=1, description=f"training the digits flow (loss {loss_avg:.4f})")
            done = step + 1
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                entry = {"step": done, "loss": loss_avg, "lr": _lr_at(step, cfg), "wall_s": time.time() - t0}
                with open(log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                write_state(ckpt_path, {"model": model.state_dict(), "ema": ema.state_dict(),
                                        "opt": opt.state_dict(), "generator": gen.get_state(), "step": done,
                                        "elapsed": time.time() - t0})
    wall = time.time() - t0
    summary = {
        "steps": cfg.steps,
        "final_loss": loss_avg,
        "wall_s": round(wall, 1),
        "train_config": asdict(cfg),
        "threads": torch.get_num_threads(),
    }
    save_weights(ema, out_path, "digits-flow-unet", ucfg.to_dict(), extra=summary)
    atomic_write_text(work / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _train_step(model, ema, opt, cfg: FlowTrainConfig, step: int, x_all, y_all, gen, loss_avg):
    idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)
    x1, y = x_all[idx], y_all[idx].clone()
    drop = torch.rand(cfg.batch_size, generator=gen) < cfg.label_dropout
    y[drop] = model.null_class
    for group in opt.param_groups:
        group["lr"] = _lr_at(step, cfg)
    loss = flow_matching_loss(model, x1, y, generator=gen)
    if not torch.isfinite(loss):
        raise TrainingError(f"flow-matching loss became {loss.item()} at step {step}; lower --lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    with torch.no_grad():
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1 - decay)
    return loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
