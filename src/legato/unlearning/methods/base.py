"""The methods, all trained by the same loop: what is trainable and how the result is saved.

- `legato`: Neural-ODE adapters after each synthesis block, base frozen (the method);
- `residual`: the same field used once, x + f(x), no ODE and no trajectory term (the LoRA-style ablation);
- `guide`: full fine-tuning of the synthesis network (GUIDE);
- `baseline`: full fine-tuning towards the average face with the local loss only (GUIDE's baseline).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from legato.files import atomic_write_json
from legato.ode import AdapterSet, attach, save_bundle
from legato.unlearning.config import UnlearnConfig

ADAPTER_SET_NAME = "forget"


@dataclass
class Trainable:
    method: str
    unlearned: nn.Module  # the generator being changed (with adapters, or a fine-tuned copy)
    params: list[nn.Parameter]
    adapter_set: AdapterSet | None = None
    uses_trajectory: bool = False
    trajectory_mode: str = "all"
    trajectory_site: int = -2
    _named: dict[str, nn.Parameter] = field(default_factory=dict)

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.params)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: p.detach().clone() for k, p in self._named.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, p in self._named.items():
                p.copy_(state[k])

    def trajectory_loss(self, reference: torch.Tensor, forgotten_row: int | None = 0) -> torch.Tensor:
        """The trajectory term of the forward calls since the last call (their records are consumed).
        `forgotten_row`: where the forgotten latent sits in that batch (None: not in it), for the
        reference mode, which reads that latent alone."""
        if self.adapter_set is None:
            return reference.new_zeros(())
        loss = self.adapter_set.trajectory_consistency(mode=self.trajectory_mode, site_index=self.trajectory_site,
                                                       row=forgotten_row)
        return loss if self.uses_trajectory else loss.detach() * 0

    def save(self, directory: Path, metadata: dict) -> None:
        """Adapter bundle for adapter methods; the fine-tuned weights as safetensors for full fine-tuning."""
        if self.adapter_set is not None:
            save_bundle(self.adapter_set, directory, metadata=metadata)
            return
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: p.detach().cpu().contiguous() for k, p in self._named.items()}
        save_file(tensors, str(directory / "finetuned_weights.safetensors"))
        atomic_write_json(directory / "finetune_config.json", {"method": self.method, "metadata": metadata})


def build(generator: nn.Module, config: UnlearnConfig, adapter_name: str = ADAPTER_SET_NAME) -> Trainable:
    """Make the model to train for `config.method`. For adapter methods `generator` itself gets the
    adapters (the caller keeps a frozen copy as the source); full fine-tuning trains a deep copy."""
    if config.method in ("legato", "residual"):
        if config.method == "legato":
            settings = dict(hidden=config.hidden, field=config.field, t_end=config.t_end,
                            step_size=config.step_size, method=config.solver)
        else:  # one Euler step of length 1 is exactly x + f(x)
            settings = dict(hidden=config.hidden, field=config.field, t_end=1.0, step_size=1.0, method="euler")
        adapter_set = attach(generator, generator.adapter_sites(), name=adapter_name, **settings)
        named = {f"{site}::{n}": p for site in adapter_set.sites
                 for n, p in adapter_set.adapter(site).named_parameters()}
        return Trainable(config.method, generator, list(named.values()), adapter_set,
                         uses_trajectory=config.method == "legato", trajectory_mode=config.trajectory,
                         trajectory_site=config.trajectory_site, _named=named)
    unlearned = copy.deepcopy(generator)
    for p in unlearned.parameters():
        p.requires_grad_(False)
    trainable_ids = {id(p) for p in unlearned.synthesis_parameters()}
    named = {n: p for n, p in unlearned.named_parameters() if id(p) in trainable_ids}
    for p in named.values():
        p.requires_grad_(True)
    return Trainable(config.method, unlearned, list(named.values()), None, _named=named)
