"""`StrengthMap`: what a user's strength s ∈ [0, 1] turns the dial to, stored with the result.

A dial's own scale (an ODE's time span, an output scale, a LoRA scale) need not move forgetting evenly:
on SynthFaces most of it happened in a tenth of the span. A run can measure its result along that scale and
store a monotone piecewise-linear map from the user's strength to the dial's own value, so that s = 0.5
means "half forgotten" for this result (`unlearning.dial_calibration`). The map keeps 0 → 0 (the source
model, exactly) and 1 → 1 (the trained result, exactly), so calibrating never changes the two ends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from legato.errors import CheckpointError

MAX_KNOTS = 1001  # a stored map is read from a file: bound what it may ask for


class StrengthMap:
    """Knots (s_i, u_i): 0 = s_0 < … < s_n = 1, 0 = u_0 ≤ … ≤ u_n = 1; linear between them."""

    def __init__(self, strengths: Sequence[float], values: Sequence[float]) -> None:
        s, u = [float(v) for v in strengths], [float(v) for v in values]
        problem = _problem(s, u)
        if problem:
            raise ValueError(problem)
        self.strengths, self.values = s, u

    def __call__(self, strength: float) -> float:
        s = float(strength)
        if s <= 0.0:
            return 0.0
        if s >= 1.0:
            return 1.0
        for i in range(1, len(self.strengths)):
            if s <= self.strengths[i]:
                s0, s1 = self.strengths[i - 1], self.strengths[i]
                u0, u1 = self.values[i - 1], self.values[i]
                return u0 + (u1 - u0) * (s - s0) / (s1 - s0)
        return 1.0

    def to_json(self) -> dict:
        return {"strengths": [round(v, 6) for v in self.strengths], "values": [round(v, 6) for v in self.values]}

    @classmethod
    def from_json(cls, data, where: str = "the bundle") -> StrengthMap | None:
        """The map stored in a result's config (None when it stores none); a damaged one is a
        `CheckpointError` naming `where`."""
        if data is None:
            return None
        try:
            s, u = data["strengths"], data["values"]
            if not isinstance(s, list) or not isinstance(u, list):
                raise TypeError("knots are not lists")
            return cls(s, u)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            detail = " ".join(str(e).split())[:120]
            raise CheckpointError(f"{where}: its strength_map is damaged ({detail})") from e

    def __eq__(self, other) -> bool:
        return isinstance(other, StrengthMap) and (self.strengths, self.values) == (other.strengths, other.values)

    def __repr__(self) -> str:
        pairs = ", ".join(f"{s:g}→{u:.3f}" for s, u in zip(self.strengths, self.values, strict=True))
        return f"StrengthMap({pairs})"


def _problem(s: list[float], u: list[float]) -> str | None:
    if len(s) != len(u):
        return f"{len(s)} strengths but {len(u)} values"
    if not 2 <= len(s) <= MAX_KNOTS:
        return f"a strength map needs 2 to {MAX_KNOTS} knots (got {len(s)})"
    if not all(math.isfinite(v) for v in s + u):
        return "a knot is not a finite number"
    if s[0] != 0.0 or s[-1] != 1.0 or u[0] != 0.0 or u[-1] != 1.0:
        return "a strength map must run from (0, 0) to (1, 1)"
    if any(b <= a for a, b in zip(s, s[1:], strict=False)):
        return "the strengths must increase"
    if any(b < a for a, b in zip(u, u[1:], strict=False)):
        return "the values must not decrease"
    return None


def mapped(strength_map: StrengthMap | None, strength: float) -> float:
    """The dial's own value for a user's `strength` (itself without a map)."""
    return float(strength) if strength_map is None else strength_map(strength)
