"""What the switched adapter fields bring to training, kept beside the methods that attach them
(`adapters.py`), so that the loop and the objective name no field.

- `GateMembership`: the gated field's membership term, with its bank of other people's conditions.
- `remember_forgotten`: the keyed field's keys (and, in the identity and embedding spaces, its map), set
  before every start of a run.
"""

from __future__ import annotations

import torch

GATE_BUFFER = 4096  # conditions of people not forgotten kept per site for the gate's membership term
GATE_NEGATIVES = 256  # of them, drawn each step
_PREFIX = "gate_buffer::"  # the bank's tensors in a checkpoint


class GateMembership:
    """The gated field's membership term over an adapter set (zero for a set whose field has no gate)."""

    def __init__(self, adapter_set) -> None:
        self.adapter_set = adapter_set
        self.bank: dict[str, torch.Tensor] = {}  # per site: the conditions of people not forgotten seen so far

    def loss(self, targets: torch.Tensor, others: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The membership term for the forward calls since the last call (records consumed).

        At every site the gate should open for the forgotten latents (`targets`, a `[batch]` mask of the
        rows; with `--gate-positives neighbourhood` their adjacency latents too) and shut for everyone else.
        The others are the global rows, kept in a bank of up to `GATE_BUFFER` conditions per site: a step
        renders 2 random people, too few to teach a classifier, but the bank gives it hundreds at no
        rendering cost (tests/test_ode_gated.py, docs/reference/many-people.md). The adjacency rows are
        otherwise left out: they lie between the forgotten and random people. The term is the class-balanced
        binary cross-entropy, averaged over the sites; zero without a gate.
        """
        conditions = self.adapter_set.gate_conditions()
        if not conditions:
            return reference.new_zeros(())
        terms = []
        for site, cond in conditions.items():
            field = self.adapter_set.adapter(site).field
            bank = torch.cat([self.bank.get(site, cond[:0]), cond[others.to(cond.device)]])[-GATE_BUFFER:]
            self.bank[site] = bank
            term = reference.new_zeros(())
            if targets.any():
                term = term - torch.log(field.openness(cond[targets.to(cond.device)]).clamp_min(1e-6)).mean()
            if bank.shape[0]:
                pick = bank[torch.randperm(bank.shape[0], device=bank.device)[:GATE_NEGATIVES]]
                term = term - torch.log((1 - field.openness(pick)).clamp_min(1e-6)).mean()
            terms.append(term / 2)
        return torch.stack(terms).mean()

    def state_dict(self) -> dict[str, torch.Tensor]:
        # the bank, so that a resumed run draws its negatives as before
        return {f"{_PREFIX}{site}": bank.clone() for site, bank in self.bank.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.bank = {k[len(_PREFIX):]: v.clone() for k, v in state.items() if k.startswith(_PREFIX)}


def remember_forgotten(adapter_set, unlearned, ws_u: torch.Tensor, camera: torch.Tensor, *, source=None,
                       identity_model=None, chunk: int = 16) -> None:
    """The keyed field's gate opens at the forgotten latents: give it the latent each site sees for each of
    them (at every start, a resumed one too: the keys follow from `ws_u`, the checkpoint holds none). In the
    identity and embedding spaces it also needs its map, fitted on `source` at the same view from seeded
    latents, so a resumed or extended run fits the same map."""
    field = adapter_set.adapter(adapter_set.sites[0]).field
    if field.awaits_map:
        from legato.unlearning.gate_space import embedding_map, identity_projection

        center, scale = adapter_set.gate_standardisation()
        if field.space == "embedding":
            adapter_set.set_gate_embedding_map(embedding_map(source, identity_model, center, scale, camera))
        else:
            adapter_set.set_gate_projection(identity_projection(source, identity_model, center, scale, camera))
    parts = []
    for a in range(0, ws_u.shape[0], chunk):
        rows = ws_u[a:a + chunk]
        parts.append(adapter_set.site_conditions(
            lambda rows=rows: unlearned.synthesis(rows, camera.expand(rows.shape[0], -1))))
    adapter_set.set_gate_keys({site: torch.cat([p[site] for p in parts]) for site in parts[0]})


def keyed_setup(adapter_set, unlearned):
    """The keyed field's `Trainable.on_setup` hook: its keys from the objective's forgotten latents, at the
    objective's first view."""

    def setup(objective) -> None:
        remember_forgotten(adapter_set, unlearned, objective.ws_u, objective.views[:1], source=objective.source,
                           identity_model=objective.identity_model)

    return setup
