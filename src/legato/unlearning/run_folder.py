"""The run folder every forgetting run writes, whatever the generator.

`OUT/` appears only when the run has finished: it is built in `OUT.partial/` (the loop's checkpoint and
log live there while it trains) and then renamed, so a failure never leaves a half-written `OUT`. A run
stopped by Ctrl-C or a crash after a checkpoint keeps `OUT.partial/` for `--resume`; one that failed before
any checkpoint leaves nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from legato.errors import InputError
from legato.unlearning.loop import CHECKPOINT, LOG


def work_dir_for(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def check(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse an `out` that exists (without `overwrite`) or a resume with nothing to resume, before any
    long step; return the work folder (not created yet: see `start`)."""
    out = Path(out)
    work = work_dir_for(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pick another --out or pass --overwrite")
    if resume and not (work / CHECKPOINT).is_file():
        raise InputError(f"nothing to resume: {work / CHECKPOINT} does not exist")
    return work


def start(work: Path, *, resume: bool = False) -> Path:
    """Create the work folder just before training; a fresh run drops a stale checkpoint and log there."""
    work.mkdir(parents=True, exist_ok=True)
    if not resume:
        for stale in (work / CHECKPOINT, work / LOG):
            stale.unlink(missing_ok=True)
    return work


def failure_hint(message: str, work: Path, lr: float) -> str:
    """A failed training's message with the next step that works: `--resume` only where a checkpoint exists
    (else the half-made folder goes, since there is nothing to continue from)."""
    if (work / CHECKPOINT).is_file():
        return (f"{message}; lower --lr (now {lr}) and rerun with --resume to continue from the last "
                f"checkpoint in {work}")
    shutil.rmtree(work, ignore_errors=True)
    return (f"{message}; nothing was saved (no checkpoint yet): lower --lr (now {lr}) or the loss "
            "weights and rerun")


def result_folder(work: Path) -> Path:
    """`work/adapter/`, where the result is saved: emptied of what an earlier attempt (an evaluation that
    failed before a resume) left there, not yet created."""
    folder = Path(work) / "adapter"
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def finish(work: Path, out: str | Path) -> Path:
    """The finished work folder becomes `out` (its checkpoint removed: a finished run has nothing to resume)."""
    out = Path(out)
    (Path(work) / CHECKPOINT).unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return out


PEOPLE_FILE = "target_ws.safetensors"  # in OUT/adapter/: the forgotten latents, their targets, held-out photos


def write_people(adapter_dir: Path, ws, target, held_out_ws=None) -> Path:
    """The latents a result forgot (`ws`, `[N, num_ws, w_dim]`), their targets and any held-out photos'
    latents, beside the result (what `legato evaluate` re-judges and `--extend` replays)."""
    from safetensors.torch import save_file

    tensors = {"ws": ws.cpu().contiguous(), "target": target.cpu().contiguous()}
    if held_out_ws is not None:
        tensors["held_out_ws"] = held_out_ws.cpu().contiguous()
    path = Path(adapter_dir) / PEOPLE_FILE
    save_file(tensors, str(path))
    return path


def read_people(adapter_dir: str | Path) -> dict:
    """What `write_people` wrote in a run's `adapter/` folder (or the run folder itself): `ws`, `target`
    and, when there were held-out photos, `held_out_ws`. A missing or damaged file is one clear error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from legato.errors import CheckpointError

    folder = Path(adapter_dir)
    if (folder / "adapter" / PEOPLE_FILE).is_file():
        folder = folder / "adapter"
    path = folder / PEOPLE_FILE
    if not path.is_file():
        raise InputError(f"{folder} has no {PEOPLE_FILE}: give a run folder (or its adapter/) written by "
                         "legato unlearn")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    if "ws" not in tensors:
        raise CheckpointError(f"{path} has no tensor 'ws' (has {sorted(tensors)})")
    return tensors
