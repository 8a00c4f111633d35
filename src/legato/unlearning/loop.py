"""The one training loop of every forgetting run, whatever the generator: optimiser, RNG, checkpoint and
resume, log, progress bar, forget checks and early stop. What differs between kinds of generator — what an
iteration draws, which losses it computes, what a model must be told before training — is an `Objective`
(as PEFT keeps one trainer and puts what differs into the tuner). The loop names no method, no field and
no backend.

An objective provides:
- `name` (the progress bar's label), `model` (what the checks score: the unlearned generator), `params`
  (what the optimiser trains), `state_dict()` / `load_state_dict()` (what a checkpoint keeps of it);
- `setup()`: before the clock starts, at every start (a resumed one too) — values fixed before training;
- `begin(start)`: after the clock starts — training mode, a method's preparation when `start` is 0;
- `step(step, rng) -> dict`: one iteration's draws (from `rng`, in a fixed order so that a resumed run
  repeats them), losses and backward pass; returns floats with `total`; raises `TrainingError` on a
  non-finite loss;
- `end()`: restore what `begin` changed (also after an error);
- `progress_info(losses) -> str`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from legato.files import atomic_write_bytes
from legato.training_state import read_state, write_state

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


class Objective(Protocol):
    name: str
    model: Any
    params: list

    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def setup(self) -> None: ...
    def begin(self, start: int) -> None: ...
    def step(self, step: int, rng: torch.Generator) -> dict: ...
    def end(self) -> None: ...
    def progress_info(self, losses: dict) -> str: ...


@dataclass
class LoopSettings:
    """What `run` reads of a config, for objectives without an `UnlearnConfig` (an `UnlearnConfig` has the
    same fields)."""

    iterations: int
    lr: float
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    eval_every: int = 50
    early_stop: bool = False
    stop_every: int = 10
    stop_patience: int = 2
    stop_consolidate: int = 0
    log_first: bool = False  # also log the first step (the digits flow's log always had it)


@dataclass
class TrainResult:
    steps: int
    seconds: float  # training wall time, without the quick scores' evaluation time
    seconds_to_forget: float | None  # training time until the quick id_target first fell below the threshold
    step_to_forget: int | None
    final_losses: dict
    stopped_early: bool = False  # the forget check held `stop_patience` times in a row before `iterations`
    stop_record: dict | None = None  # the last stop check's scores
    # the step at which the stop check held `stop_patience` times in a row, and the time until then: training
    # and the stop checks' own time (what a user waits for a verified forget; consolidation comes after)
    step_verified: int | None = None
    seconds_to_verified: float | None = None
    check_seconds: float = 0.0  # the stop checks' time in all


def save_checkpoint(work: Path, step: int, objective: Objective, opt, rng: torch.Generator, elapsed: float,
                    forget: tuple, passes: int = 0, stop_at: int | None = None, check_seconds: float = 0.0,
                    verified: tuple = ()) -> None:
    write_state(work / CHECKPOINT, {
        "step": step,
        "trainable": objective.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": rng.get_state(),
        "torch_rng": torch.get_rng_state(),
        "elapsed": elapsed,
        "forget": list(forget),
        "stop_passes": passes,
        "stop_at": stop_at,
        "check_seconds": check_seconds,
        "verified": list(verified),
    })


def load_checkpoint(work: Path):
    return read_state(work / CHECKPOINT)


def truncate_log(path: Path, last_step: int) -> None:
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a kill mid-write
            continue
        if isinstance(record, dict) and record.get("step", last_step + 1) <= last_step:
            keep.append(line)
    atomic_write_bytes(path, ("\n".join(keep) + ("\n" if keep else "")).encode())


def run(
    objective: Objective,
    config,
    work: Path,
    *,
    threshold: float | None = None,
    resume: bool = False,
    progress: bool = True,
    quick_scores: Callable | None = None,
    forget_check: Callable | None = None,
    stop_check: Callable | None = None,
) -> TrainResult:
    """Train `objective.params` for `config.iterations` steps of Adam at `config.lr` (seed `config.seed`).

    `config` needs `iterations`, `lr`, `seed`, `log_every`, `checkpoint_every`, `eval_every`, `early_stop`,
    `stop_every` and `stop_patience` (an `UnlearnConfig` has them). `quick_scores(model) -> dict(id_target,
    id_preservation)` is logged every `eval_every` steps. `forget_check(model) -> id_target` runs after every
    step until it first falls below `threshold` (the time to forget, to the step). `stop_check(model) ->
    dict(passed, …)` runs every `stop_every` steps when `config.early_stop`; training ends after
    `stop_patience` passes in a row and `stop_consolidate` more steps. No check's time counts as training
    time; the time to the verified forget counts training and the stop checks. Checkpoints go to
    `work/checkpoint.pt` every `checkpoint_every` steps and on Ctrl-C (the completed steps exactly), the log to
    `work/log.jsonl`; `resume` continues from the checkpoint, bit for bit.
    """
    model = objective.model
    opt = torch.optim.Adam(objective.params, lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    start, elapsed_before = 0, 0.0
    forget_step, forget_seconds = None, None
    passes, stopped, stop_record, stop_at = 0, False, None, None
    check_seconds, verified = 0.0, ()  # the stop checks' time so far; (step, seconds) once verified
    log_path = work / LOG
    if resume:
        ckpt = load_checkpoint(work)
        if ckpt is not None:
            objective.load_state_dict(ckpt["trainable"])
            opt.load_state_dict(ckpt["optimizer"])
            rng.set_state(ckpt["rng"])
            torch.set_rng_state(ckpt["torch_rng"])
            start, elapsed_before = int(ckpt["step"]), float(ckpt["elapsed"])
            forget_step, forget_seconds = ckpt["forget"] if ckpt["forget"] else (None, None)
            passes = int(ckpt.get("stop_passes", 0))
            stop_at = ckpt.get("stop_at")
            check_seconds = float(ckpt.get("check_seconds", 0.0))
            verified = tuple(ckpt.get("verified") or ())
            truncate_log(log_path, start)
    elif log_path.exists():
        log_path.unlink()
    objective.setup()

    t0 = time.perf_counter()
    losses: dict = {}
    step = completed = start
    rng_at_start = rng.get_state()
    eval_seconds = 0.0  # the checks measure the run; their time is not training time

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0 - eval_seconds

    def measure(score):
        """`score(model)` without gradients, its time kept off the training clock."""
        nonlocal eval_seconds
        t_eval = time.perf_counter()
        with torch.no_grad():
            value = score(model)
        eval_seconds += time.perf_counter() - t_eval
        return value

    def forgotten() -> tuple:
        return (forget_step, forget_seconds) if forget_step is not None else ()

    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False)
        bar.start()
        task = bar.add_task(f"unlearning ({objective.name})", total=config.iterations, completed=start, info="")
    log_file = open(log_path, "a")  # noqa: SIM115 (kept open for the whole loop)
    try:
        objective.begin(start)  # (counted as training time)
        for step in range(start + 1, config.iterations + 1):
            rng_at_start = rng.get_state()
            opt.zero_grad(set_to_none=True)
            losses = objective.step(step, rng)
            opt.step()
            completed = step
            record = None
            if (step % config.log_every == 0 or step == config.iterations
                    or (step == 1 and getattr(config, "log_first", False))):
                record = {"step": step, "seconds": round(elapsed(), 3), **{k: round(v, 6) for k, v in losses.items()}}
            checking = forget_check is not None and forget_step is None and threshold is not None
            if checking and measure(forget_check) < threshold:
                forget_step, forget_seconds = step, elapsed()
            if quick_scores is not None and (step % config.eval_every == 0 or step == config.iterations):
                scores = measure(quick_scores)
                record = {**(record or {"step": step, "seconds": round(elapsed(), 3)}), **scores}
                if forget_step is None and threshold is not None and scores["id_target"] < threshold:
                    forget_step, forget_seconds = step, elapsed()
            if stop_check is not None and config.early_stop and stop_at is None and step % config.stop_every == 0:
                measured_before = eval_seconds
                stop_record = measure(stop_check)
                check_seconds += eval_seconds - measured_before  # `measure` already times it off the clock
                passes = passes + 1 if stop_record["passed"] else 0
                if passes >= config.stop_patience:  # verified: train `stop_consolidate` more steps, then stop
                    stop_at = step + int(getattr(config, "stop_consolidate", 0))
                    verified = (step, elapsed() + check_seconds)
                record = {**(record or {"step": step, "seconds": round(elapsed(), 3)}),
                          "stop_check": dict(stop_record), "stop_passes": passes}
            if record is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            stopped = stop_at is not None and step >= stop_at
            if step % config.checkpoint_every == 0:
                save_checkpoint(work, step, objective, opt, rng, elapsed(), forgotten(), passes, stop_at,
                                check_seconds, verified)
            if bar is not None:
                bar.update(task, completed=step, info=objective.progress_info(losses))
            if stopped:
                break
    except KeyboardInterrupt:
        # keep exactly the completed steps: the RNG goes back to the start of an unfinished step
        if completed < step:
            rng.set_state(rng_at_start)
        save_checkpoint(work, completed, objective, opt, rng, elapsed(), forgotten(), passes, stop_at,
                        check_seconds, verified)
        raise
    finally:
        objective.end()
        log_file.close()
        if bar is not None:
            bar.stop()
    return TrainResult(completed, elapsed(), forget_seconds, forget_step, losses, stopped, stop_record,
                       *(verified or (None, None)), check_seconds)
