"""Matplotlib figures (Agg backend, PNG): the collapse curve and the strength sweep."""

from __future__ import annotations

import io
import json
from pathlib import Path

from legato.errors import InputError
from legato.files import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_collapse_log(log_jsonl_path: str | Path) -> list[dict]:
    """The records of a training `log.jsonl` that carry identity scores, in step order."""
    path = Path(log_jsonl_path)
    if not path.is_file():
        raise InputError(f"training log {path} does not exist")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path} line {n} is not JSON ({e})") from e
        if isinstance(rec, dict) and "step" in rec and rec.get("id_target") is not None:
            rows.append(rec)
    return sorted(rows, key=lambda r: r["step"])


def plot_collapse(log_jsonl_path: str | Path, png_path: str | Path, threshold: float | None = None) -> Path:
    """`id_target` and `id_preservation` against training step, from the lines of `log.jsonl`."""
    rows = read_collapse_log(log_jsonl_path)
    if not rows:
        raise InputError(f"{log_jsonl_path} has no lines with step and id_target; nothing to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["id_target"] for r in rows], "o-", color="#c0392b", label="id_target (forgotten, ↓)")
    pres = [(r["step"], r["id_preservation"]) for r in rows if r.get("id_preservation") is not None]
    if pres:
        ax.plot(*zip(*pres, strict=True), "s-", color="#2471a3", label="id_preservation (others, ↑)")
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"same-person threshold {threshold:.2f}")
    ax.set_xlabel("training step")
    ax.set_ylabel("identity cosine to source")
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Collapse curve")
    return save_figure(fig, png_path)


def plot_sweep(result: dict, png_path: str | Path) -> Path:
    """Identity scores against adapter strength, from a `run_sweep` result."""
    points = result.get("points") or []
    if not points:
        raise InputError("the sweep result has no points to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    s = [p["strength"] for p in points]
    styles = {"id_target": ("o-", "#c0392b", "id_target (↓)"), "id_others": ("^-", "#d68910", "id_others (↓)"),
              "id_preservation": ("s-", "#2471a3", "id_preservation (↑)")}
    for key, (marker, color, label) in styles.items():
        if all(p.get(key) is not None for p in points):
            ax.plot(s, [p[key] for p in points], marker, color=color, label=label)
    if result.get("threshold") is not None:
        ax.axhline(result["threshold"], color="grey", ls="--", lw=1, label="same-person threshold")
    rho = result.get("spearman")
    ax.set_title("Strength sweep" + (f" (Spearman ρ of id_target = {rho:.3f})" if rho is not None else ""))
    ax.set_xlabel("adapter strength")
    ax.set_ylabel("identity cosine to source")
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    else:  # no identity model: nothing was scored
        ax.text(0.5, 0.5, "no identity scores (no identity model)", ha="center", va="center",
                transform=ax.transAxes, color="grey")
    return save_figure(fig, png_path)
