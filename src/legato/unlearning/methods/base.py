"""What every method hands the shared training loop (`Trainable`) and what it registers (`Method`).

A method decides three things, as a PEFT tuner does: what it trains (`build`), how it saves and loads the
result (`save` on the trainable; `holds`/`load` on the method), and what its strength dial changes
(`Dial`: the ODE's time span, an output scale, a LoRA scale, or nothing for fine-tuned weights).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from legato.unlearning.config import UnlearnConfig

ADAPTER_SET_NAME = "forget"
GATE_BUFFER = 4096  # conditions of people not forgotten kept per site for the gate's membership term
GATE_NEGATIVES = 256  # of them, drawn each step


class Dial(Protocol):
    """A strength in [0, 1] (0: the source model, 1: the trained result) and an on/off switch."""

    strength: float
    enabled: bool


@dataclass
class Trainable:
    method: str
    unlearned: nn.Module  # the generator being changed (with adapters, or a fine-tuned copy)
    params: list[nn.Parameter]
    adapter_set: object | None = None  # the ODE adapter set, whose records feed the trajectory term
    dial: Dial | None = None  # what --strength turns (None: no dial)
    uses_trajectory: bool = False
    trajectory_mode: str = "all"
    trajectory_site: int = -2
    local_only: bool = False  # the average-face baseline: no adjacency or global terms
    # called once before a fresh run's first step with a function that back-propagates the local loss at
    # the starting weights into `.grad` (SalUn's saliency); a resumed run reads its state instead
    prepare: Callable[[Callable[[], None]], None] | None = None
    save_fn: Callable[[Path, dict], None] | None = None
    _named: dict[str, nn.Parameter] = field(default_factory=dict)
    # tensors that are not trained but belong to the run's state (SalUn's mask), checkpointed with it
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    # the gated field: the conditions of people not forgotten seen so far, per site (`gate_loss`); rebuilt
    # after a resume
    gate_buffer: dict[str, torch.Tensor] = field(default_factory=dict)

    def num_trainable(self) -> int:
        """Parameters the method may change (for SalUn: the unmasked ones)."""
        masked = sum(int(m.sum()) for m in self.buffers.values() if m.dtype == torch.bool)
        return masked if self.buffers else sum(p.numel() for p in self.params)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: p.detach().clone() for k, p in self._named.items()}
        state.update({f"buffer::{k}": b.clone() for k, b in self.buffers.items()})
        # the gate's bank of other people's latents, so that a resumed run draws its negatives as before
        state.update({f"gate_buffer::{site}": bank.clone() for site, bank in self.gate_buffer.items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, p in self._named.items():
                p.copy_(state[k])
            for k, b in self.buffers.items():
                b.copy_(state[f"buffer::{k}"])
        self.gate_buffer = {k.split("::", 1)[1]: v.clone() for k, v in state.items() if k.startswith("gate_buffer::")}

    def trajectory_loss(self, reference: torch.Tensor, forgotten_row: int | None = 0) -> torch.Tensor:
        """The trajectory term of the forward calls since the last call (their records are consumed).
        `forgotten_row`: where the forgotten latent sits in that batch (None: not in it), for the
        reference mode, which reads that latent alone."""
        if self.adapter_set is None:
            return reference.new_zeros(())
        loss = self.adapter_set.trajectory_consistency(mode=self.trajectory_mode, site_index=self.trajectory_site,
                                                       row=forgotten_row)
        return loss if self.uses_trajectory else loss.detach() * 0

    def gate_loss(self, targets: torch.Tensor, others: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The gated field's membership term for the forward calls since the last call (records consumed).

        At every site the gate should open for the forgotten latents (`targets`, a `[batch]` mask of the
        rows; with `--gate-positives neighbourhood` their adjacency latents too) and shut for everyone else.
        The others are the global rows, kept in a buffer of up to `GATE_BUFFER` conditions per site: a step
        renders 2 random people, too few to teach a classifier, but the buffer gives it hundreds at no
        rendering cost (tests/test_ode_gated.py, docs/many.md). The adjacency rows are otherwise left out: they
        lie between the forgotten and random people. The term is the class-balanced binary cross-entropy,
        averaged over the sites; zero without a gate.
        """
        conditions = self.adapter_set.gate_conditions() if self.adapter_set is not None else {}
        if not conditions:
            return reference.new_zeros(())
        terms = []
        for site, cond in conditions.items():
            field = self.adapter_set.adapter(site).field
            bank = torch.cat([self.gate_buffer.get(site, cond[:0]), cond[others.to(cond.device)]])[-GATE_BUFFER:]
            self.gate_buffer[site] = bank
            term = reference.new_zeros(())
            if targets.any():
                term = term - torch.log(field.openness(cond[targets.to(cond.device)]).clamp_min(1e-6)).mean()
            if bank.shape[0]:
                pick = bank[torch.randperm(bank.shape[0], device=bank.device)[:GATE_NEGATIVES]]
                term = term - torch.log((1 - field.openness(pick)).clamp_min(1e-6)).mean()
            terms.append(term / 2)
        return torch.stack(terms).mean()

    def save(self, directory: Path, metadata: dict) -> None:
        if self.save_fn is None:
            raise NotImplementedError(f"method {self.method!r} has no save function")
        self.save_fn(Path(directory), metadata)


BUNDLE_CONFIG = "adapter_config.json"  # the PEFT-shaped bundles' config (adapters and LoRA alike)
UNREADABLE = "<unreadable>"


def bundle_peft_type(directory) -> str | None:
    """The `peft_type` of the bundle config in `directory`: None without one, `UNREADABLE` when it is not JSON."""
    path = Path(directory) / BUNDLE_CONFIG
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("peft_type")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return UNREADABLE


@dataclass
class LoadedResult:
    method: str
    unlearned: nn.Module  # the generator the result was loaded into
    dial: Dial | None
    # the trained tensors under the names the method's `Trainable` gives them (`--extend` starts from these)
    state: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    summary: str  # one line: what it trains and how
    dial: str | None  # what its strength changes (None: no dial)
    build: Callable[[nn.Module, UnlearnConfig, str], Trainable]
    holds: Callable[[Path], bool]  # does a result folder hold this method's kind of result
    load: Callable[[Path, nn.Module], LoadedResult]  # the result applied to a freshly loaded generator
