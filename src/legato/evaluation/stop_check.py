"""The forget check behind early stop: does the unlearned model already do what the user asked?

It is run with the loss's identity model and its threshold, never with the judge (the judge is never the
trainer: nothing that decides training may read it). The views are ones training does not use (yaws between
the evaluation grid's), the strangers a fixed set drawn apart from the evaluation's, and the source's
embeddings are computed once.
"""

from __future__ import annotations

import torch

from legato.evaluation.metrics import _embed, _pairs, random_ws, source_cached, view_similarities
from legato.evaluation.verdicts import PRESERVATION_GOAL

CHECK_VIEW_FRACTIONS = (0.07, 0.33, 0.62, 0.93)  # of the evaluation yaw range; the 11 training views sit at k/10
CHECK_STRANGERS = 16
CHECK_SEED = 777_777


class ForgetCheck:
    """`check(unlearned) -> {"passed", "id_target", "id_others", "id_preservation"}` (means over views)."""

    def __init__(self, source, identity_model, threshold: float, ws_u: torch.Tensor,
                 held_out_ws: torch.Tensor | None = None, goal: float = PRESERVATION_GOAL,
                 n_strangers: int = CHECK_STRANGERS) -> None:
        self.source, self.model, self.threshold, self.goal = source, identity_model, float(threshold), goal
        self.views = torch.cat([source.view_at(u) for u in CHECK_VIEW_FRACTIONS]).to(ws_u.device)
        self.groups = {"id_target": ws_u}
        if held_out_ws is not None and held_out_ws.shape[0]:
            self.groups["id_others"] = held_out_ws
        self.groups["id_preservation"] = random_ws(source, n_strangers, CHECK_SEED)
        with torch.no_grad():
            self.source_embeddings = {k: self._source(source, identity_model, w) for k, w in self.groups.items()}

    def _source(self, source, identity_model, ws: torch.Tensor) -> torch.Tensor:
        from legato.tensor_cache import tensor_digest

        w, c = _pairs(ws, self.views)
        return source_cached("embeddings", source, identity_model, lambda: _embed(source, identity_model, w, c, 64),
                             inputs=tensor_digest(w, c), batch_size=64)

    @torch.no_grad()
    def __call__(self, unlearned) -> dict:
        """The groups in order, stopping at the first that fails: the strangers (most of the renders) are
        rendered only once the person is forgotten, so a check that cannot pass costs a fifth as much. A
        group not measured reads None."""
        out = {key: None for key in self.groups}
        for key, ws in self.groups.items():
            sims = view_similarities(self.source, unlearned, self.model, ws, self.views, 64,
                                     source_embeddings=self.source_embeddings[key])
            # every forgotten latent below the threshold; the other photos and the strangers on average, as
            # their verdicts (evaluation.verdicts) read them
            out[key] = round(float(sims.mean(1).max() if key == "id_target" else sims.mean()), 5)
            holds = out[key] >= self.goal if key == "id_preservation" else out[key] < self.threshold
            if not holds:
                out["passed"] = False
                return out
        out["passed"] = True
        return out
