"""PNG grids, the strength-sweep plot and the self-contained HTML report of a digits-flow unlearning run."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def grid_image(rows: list[torch.Tensor], scale: int = 3, pad: int = 2) -> Image.Image:
    """One row per tensor `[K, 1, H, W]` in [-1, 1] (rows may differ in K); white padding; grey scale."""
    h, w = rows[0].shape[2], rows[0].shape[3]
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            pix = ((1.0 - img[0].clamp(-1, 1)) * 127.5).round().to(torch.uint8).numpy()  # ink dark on white
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = pix
    im = Image.fromarray(canvas, mode="L")
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def sweep_plot(sweep: list[dict], forget_class: int, title: str) -> bytes:
    """PNG of forgotten- and retained-class accuracy against adapter strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = [r["strength"] for r in sweep]
    fig, ax = plt.subplots(figsize=(4.5, 3.0), dpi=100)
    ax.plot(s, [100 * r["forget_acc"] for r in sweep], "o-", label=f"class {forget_class} (forgotten)")
    ax.plot(s, [100 * r["retain_acc"] for r in sweep], "s-", label="retained classes")
    ax.set_xlabel("strength")
    ax.set_ylabel("classifier accuracy (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _img_tag(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def html_report(metrics: dict, images: dict[str, bytes]) -> str:
    """A single HTML page: the summary table, checks, grids and the sweep, images inline as base64 PNG."""
    m = metrics
    rows = [
        (
            "forgotten-class accuracy (teacher → unlearned)",
            f"{_pct(m['teacher']['forget_acc'])} → {_pct(m['unlearned']['forget_acc'])}",
        ),
        ("pure noise classified as the forgotten class", _pct(m.get("noise_classified_as_forgotten"))),
        (
            "retained-class accuracy (teacher → unlearned)",
            f"{_pct(m['teacher']['retain_acc'])} → {_pct(m['unlearned']['retain_acc'])}",
        ),
        (
            "retained-class FID vs teacher (floor: teacher vs teacher)",
            f"{m['fid_retained']:.2f} (floor {m['fid_retained_floor']:.2f})",
        ),
        (
            "retained-class MMD² vs teacher (floor)",
            f"{m['mmd2_retained']:.4f} (floor {m['mmd2_retained_floor']:.4f})",
        ),
        (
            "leakage gap, forgotten class (teacher → unlearned)",
            f"{m['leakage']['teacher']['gap']:.4f} → {m['leakage']['unlearned']['gap']:.4f}",
        ),
        (
            "membership AUC, forgotten class (teacher → unlearned)",
            f"{m['leakage']['teacher']['auc']:.3f} → {m['leakage']['unlearned']['auc']:.3f}",
        ),
        (
            "trained parameters / UNet parameters",
            f"{m['trained_params']:,} / {m['unet_params']:,} ({_pct(m['trained_fraction'])})",
        ),
        ("training steps, wall time", f"{m['steps']}, {m['train_wall_s']:.0f} s"),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    checks = "".join(f"<li>{'✔' if ok else '✘'} {html.escape(name)}</li>" for name, ok in m["checks"].items())
    sweep = "".join(
        f"<tr><td>{r['strength']:.2f}</td><td>{_pct(r['forget_acc'])}</td><td>{_pct(r['retain_acc'])}"
        f"</td></tr>"
        for r in m["sweep"]
    )
    figs = "".join(
        f"<figure>{_img_tag(data, name)}<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, data in images.items()
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>digits flow: forgetting class {m["forget_class"]}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}figure{{display:inline-block;margin:8px}}
figcaption{{font-size:85%;color:#444}}</style></head><body>
<h1>Digits flow — forgetting class {m["forget_class"]} ({html.escape(m["method"])})</h1>
<table>{table}</table>
<h2>Checks</h2><ul>{checks}</ul>
<h2>Strength sweep</h2>
<table><tr><th>strength</th><th>forgotten class</th><th>retained classes</th></tr>
{sweep}</table>
<h2>Samples</h2>{figs}
<h2>Settings</h2><pre>{html.escape(json.dumps(m["config"], indent=2))}</pre>
</body></html>
"""


def write_outputs(directory: Path, metrics: dict, images: dict[str, bytes]) -> None:
    """Write each image as `<name>.png` and `report.html` into `directory` (inside an atomic folder)."""
    for name, data in images.items():
        (directory / f"{name}.png").write_bytes(data)
    (directory / "report.html").write_text(html_report(metrics, images), encoding="utf-8")


def comparison_table(runs: list[dict]) -> str:
    """A Markdown table with one column per run's metrics (e.g. legato beside full fine-tuning)."""
    head = "| | " + " | ".join(f"{r['method']} (class {r['forget_class']})" for r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(r) for r in runs) + " |")

    row(
        "forgotten-class acc., teacher → unlearned",
        lambda r: f"{_pct(r['teacher']['forget_acc'])} → {_pct(r['unlearned']['forget_acc'])}",
    )
    row(
        "retained-class acc., teacher → unlearned",
        lambda r: f"{_pct(r['teacher']['retain_acc'])} → {_pct(r['unlearned']['retain_acc'])}",
    )
    row("pure noise classified as forgotten class", lambda r: _pct(r.get("noise_classified_as_forgotten")))
    row("retained drop (points)", lambda r: f"{r['retain_drop_points']:.1f}")
    row(
        "retained FID vs teacher (floor)",
        lambda r: f"{r['fid_retained']:.2f} ({r['fid_retained_floor']:.2f})",
    )
    row(
        "retained MMD² vs teacher (floor)",
        lambda r: f"{r['mmd2_retained']:.4f} ({r['mmd2_retained_floor']:.4f})",
    )
    row(
        "leakage gap, teacher → unlearned",
        lambda r: f"{r['leakage']['teacher']['gap']:.3f} → {r['leakage']['unlearned']['gap']:.3f}",
    )
    row(
        "membership AUC, teacher → unlearned",
        lambda r: f"{r['leakage']['teacher']['auc']:.3f} → {r['leakage']['unlearned']['auc']:.3f}",
    )
    row("trained params (% of UNet)", lambda r: f"{r['trained_params']:,} ({_pct(r['trained_fraction'])})")
    row(
        "sweep (forgotten acc. at s = " + ", ".join(f"{x['strength']:g}" for x in runs[0]["sweep"]) + ")",
        lambda r: ", ".join(f"{100 * x['forget_acc']:.0f}" for x in r["sweep"]),
    )
    row("sweep monotone", lambda r: "yes" if r["sweep_monotone"] else "no")
    row("training wall time", lambda r: f"{r['train_wall_s']:.0f} s ({r['steps']} steps)")
    row("total wall time", lambda r: f"{r['wall_s']:.0f} s")
    return "\n".join(lines) + "\n"
