"""PNG grids, the strength-sweep plot and the self-contained HTML report of a digits-flow unlearning run."""

from __future__ import annotations

import io
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


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


# the run's checks, as the report's headline cards: (check name in metrics["checks"], card label, value, note)
def _headline(m: dict) -> list[dict]:
    checks = m["checks"]
    cards = [
        ("forgotten-class accuracy <= 20%", "forgotten class: classifier accuracy ↓",
         f"{_pct(m['teacher']['forget_acc'])} → {_pct(m['unlearned']['forget_acc'])}",
         f"n = {m['config']['n_forget']} per strength; pure noise reads as it "
         f"{_pct(m['noise_classified_as_forgotten'])}",
         "the classifier still reads the forgotten class in this share of its samples"),
        ("retained-class accuracy within 3 points of the teacher", "retained classes: accuracy ↑",
         f"{_pct(m['teacher']['retain_acc'])} → {_pct(m['unlearned']['retain_acc'])}",
         f"n = {m['config']['n_retain']} per class",
         "the other nine classes are drawn as well as before"),
        ("trained parameters <= 5% of the UNet", "trained parameters",
         f"{m['trained_params']:,} ({_pct(m['trained_fraction'])})", f"of {m['unet_params']:,} in the UNet",
         "what the result changes of the model"),
        ("strength sweep monotone (forgotten-class accuracy never rises)", "strength dial",
         ", ".join(f"{100 * r['forget_acc']:.0f}" for r in m["sweep"]),
         "forgotten-class accuracy (%) at s = " + ", ".join(f"{r['strength']:g}" for r in m["sweep"]),
         "turning the strength up never brings the class back"),
    ]
    return [{"label": label, "value": value, "note": note,
             "verdict": {"passed": checks[name], "rule": name, "meaning": meaning}}
            for name, label, value, note, meaning in cards if name in checks]


def write_run_report(directory: Path, metrics: dict, images: dict[str, bytes]) -> None:
    """Each image as `<name>.png` in `directory`, then `report.html`: the image methods' report page
    (`evaluation.report.write_report`) with the digits flow's checks as its headline."""
    from legato.evaluation.report import write_report

    directory = Path(directory)
    for name, data in images.items():
        (directory / f"{name}.png").write_bytes(data)
    captions = {"samples_teacher": "the teacher: a row per class, the forgotten class first",
                "samples_unlearned": "after forgetting: the same noise, a row per class",
                "sweep_forgotten_class": "the forgotten class at each strength (a row per strength)"}
    pictures = {caption: directory / f"{name}.png" for name, caption in captions.items() if name in images}
    plots = {"the strength dial": directory / "sweep_plot.png"} if "sweep_plot" in images else {}
    write_report(directory, metrics, pictures, plots,
                 f"digits flow — forgetting class {metrics['forget_class']} ({metrics['method']})",
                 headline=_headline(metrics))


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
