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


class Membership(Protocol):
    """A field's own loss term with state of its own (the gated field's: `methods/gates.py`)."""

    def loss(self, targets: torch.Tensor, others: torch.Tensor, reference: torch.Tensor) -> torch.Tensor: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


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
    # a field's own term and preparation (`methods/gates.py`: the gated field's membership term, checkpointed
    # with the run; the keyed field's keys, set before every start with the objective at hand)
    membership: Membership | None = None
    on_setup: list[Callable[[object], None]] = field(default_factory=list)

    def num_trainable(self) -> int:
        """Parameters the method may change (for SalUn: the unmasked ones)."""
        masked = sum(int(m.sum()) for m in self.buffers.values() if m.dtype == torch.bool)
        return masked if self.buffers else sum(p.numel() for p in self.params)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: p.detach().clone() for k, p in self._named.items()}
        state.update({f"buffer::{k}": b.clone() for k, b in self.buffers.items()})
        if self.membership is not None:
            state.update(self.membership.state_dict())
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, p in self._named.items():
                p.copy_(state[k])
            for k, b in self.buffers.items():
                b.copy_(state[f"buffer::{k}"])
        if self.membership is not None:
            self.membership.load_state_dict(state)

    def trajectory_loss(self, reference: torch.Tensor, forgotten_row: int | None = 0) -> torch.Tensor:
        """The trajectory term of the forward calls since the last call (their records are consumed).
        `forgotten_row`: where the forgotten latent sits in that batch (None: not in it), for the
        reference mode, which reads that latent alone."""
        if self.adapter_set is None:
            return reference.new_zeros(())
        loss = self.adapter_set.trajectory_consistency(mode=self.trajectory_mode, site_index=self.trajectory_site,
                                                       row=forgotten_row)
        return loss if self.uses_trajectory else loss.detach() * 0

    def membership_loss(self, targets: torch.Tensor, others: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The gated field's membership term (`methods/gates.py`) for the forward calls since the last call;
        zero for a trainable without one."""
        if self.membership is None:
            return reference.new_zeros(())
        return self.membership.loss(targets, others, reference)

    def save(self, directory: Path, metadata: dict) -> None:
        if self.save_fn is None:
            raise NotImplementedError(f"method {self.method!r} has no save function")
        self.save_fn(Path(directory), metadata)


BUNDLE_CONFIG = "adapter_config.json"  # the PEFT-shaped bundles' config (adapters and LoRA alike)
UNREADABLE = "<unreadable>"


def bundle_config_value(directory, key: str):
    """`key` of the bundle config in `directory`: None without one, `UNREADABLE` when it is not JSON."""
    path = Path(directory) / BUNDLE_CONFIG
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get(key)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return UNREADABLE


def bundle_peft_type(directory) -> str | None:
    """The `peft_type` of the bundle config in `directory` (see `bundle_config_value`)."""
    return bundle_config_value(directory, "peft_type")


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
