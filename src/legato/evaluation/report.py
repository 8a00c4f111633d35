"""`write_report`: one self-contained `report.html` (images inlined as base64, no links out).

Each headline number carries its verdict (✔/✘ against the rule of `evaluation.verdicts`, with one line on
what it means). With a strength dial, a slider shows the forgotten face and a random other person at each
strength with the scores there; that is the page's only script (inline), and `#s=K` in the address opens
the slider at position K.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from legato.evaluation.metrics import DEFINITIONS
from legato.evaluation.verdicts import mark_of, verdicts
from legato.files import atomic_write_text

REPORT_NAME = "report.html"
_MAIN_KEYS = ("id_target", "id_others", "id_preservation", "fid_pre", "delta_fid_real")
_DIRECTION = {"id_target": "↓", "id_others": "↓", "id_preservation": "↑", "fid_pre": "↓", "delta_fid_real": "↓"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
     color:#1c2833;padding:0 1rem;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.3rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d5d8dc}
.cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #d5d8dc;border-radius:8px;padding:.6rem .9rem;min-width:9rem}
.card{max-width:15rem}.card b{display:block;font-size:1.35rem}.card span{font-size:.8rem;color:#566573}
.card.pass{border-color:#27ae60;background:#f4fbf6}.card.fail{border-color:#c0392b;background:#fdf4f3}
.verdict{font-weight:600}.pass .verdict{color:#1e8449}.fail .verdict{color:#a93226}
.card p{font-size:.8rem;margin:.3rem 0 0}
#dial .frames{display:flex;gap:1rem}#dial .frames img{width:192px;height:192px}
#dial input{width:min(40rem,100%)} #dial output{font-weight:600}
figure{margin:1rem 0} figcaption{font-size:.9rem;color:#424949;margin-top:.3rem}
img{max-width:100%;image-rendering:pixelated;border:1px solid #eaecee}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0} td,th{border:1px solid #d5d8dc;padding:.3rem .6rem;
     text-align:left;vertical-align:top} th{background:#f4f6f6}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap} .muted{color:#7f8c8d;font-size:.85rem}
pre{background:#f8f9f9;padding:.5rem;overflow-x:auto;font-size:.8rem}
"""


def _data_uri(path: Path) -> str | None:
    """The file as a data: URI, or None when it is missing or not a PNG/JPEG/GIF/SVG."""
    path = Path(path)
    if not path.is_file():
        return None
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
            ".svg": "image/svg+xml"}.get(path.suffix.lower())
    if mime is None:
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return f"[{_fmt(value[0])}, {_fmt(value[1])}]"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value)
    return str(value)


def _figures(items: dict[str, Path]) -> list[str]:
    out = []
    for caption, path in items.items():
        uri = _data_uri(path)
        if uri is None:  # a missing optional picture is left out
            continue
        cap = html.escape(str(caption))
        out.append(f'<figure><img src="{uri}" alt="{cap}"><figcaption>{cap}</figcaption></figure>')
    return out


def _card(label: str, value: str, note: str, verdict: dict | None) -> str:
    cls, line = "card", ""
    if verdict is not None:
        if verdict["passed"] is not None:
            cls += " pass" if verdict["passed"] else " fail"
        line = (f'<p><span class="verdict">{mark_of(verdict)}</span> {html.escape(verdict["meaning"])}'
                f'<br><span>rule: {html.escape(verdict["rule"])}</span></p>')
    return f'<div class="{cls}"><span>{html.escape(label)}</span><b>{value}</b><span>{note}</span>{line}</div>'


def _cards(metrics: dict) -> str:
    judged = verdicts(metrics)
    cards = []
    for key in _MAIN_KEYS:
        if metrics.get(key) is None:
            continue
        cards.append(_card(f"{key} {_DIRECTION[key]}", _fmt(metrics[key]), f"n = {_fmt(metrics.get(f'{key}_n'))}",
                           judged.get(key)))
    if metrics.get("target_sharpness") is not None:
        cards.append(_card("forgotten face: sharpness", f"{metrics['target_sharpness']:.4g}",
                           f"percentile among ordinary samples: {metrics['target_sharpness_percentile']:.0f}",
                           judged.get("target_plausible")))
    return f'<div class="cards">{"".join(cards)}</div>' if cards else ""


_DIAL_JS = r"""
(function(){const d=JSON.parse(document.getElementById('dial-data').textContent);
const r=document.getElementById('strength'),o=document.getElementById('strength-value'),
a=document.getElementById('dial-target'),b=document.getElementById('dial-other'),m=document.getElementById('dial-metrics');
function f(x){return x===null||x===undefined?'—':x.toFixed(3)}
function show(k){const p=d.points[k];r.value=k;o.textContent=d.strengths[k].toFixed(2);a.src=d.frames[k][0];
b.src=d.frames[k][1];m.textContent=d.keys.map(x=>x+' '+f(p[x])+(x!=='id_preservation'&&d.threshold!==null&&p[x]!==null
?(p[x]<d.threshold?' ✔':' ✘'):'')).join(' · ')}
r.addEventListener('input',()=>show(+r.value));
const h=/s=(\d+)/.exec(location.hash);show(h?Math.min(+h[1],d.points.length-1):d.points.length-1)})();
"""


def _dial(dial: dict) -> str:
    """The strength slider: `dial` has `strengths`, `points` (scores per strength), `frames` ([target PNG,
    other PNG] per strength) and `threshold`."""
    frames = [[_data_uri(Path(t)), _data_uri(Path(o))] for t, o in dial["frames"]]
    if any(u is None for pair in frames for u in pair):
        return ""
    keys = [k for k in ("id_target", "id_others", "id_preservation") if dial["points"][0].get(k) is not None]
    data = {"strengths": dial["strengths"], "points": dial["points"], "frames": frames, "keys": keys,
            "threshold": dial.get("threshold")}
    payload = json.dumps(data).replace("</", "<\\/")
    return ('<h2>Strength dial</h2><section id="dial"><p>Forgetting strength <output id="strength-value"></output>'
            f'<br><input type="range" id="strength" min="0" max="{len(frames) - 1}" step="1" '
            f'value="{len(frames) - 1}" aria-label="forgetting strength"></p><div class="frames">'
            '<figure><img id="dial-target" alt="the forgotten face at this strength"><figcaption>the forgotten face'
            '</figcaption></figure><figure><img id="dial-other" alt="a random other person at this strength">'
            '<figcaption>a random other person</figcaption></figure></div><p id="dial-metrics"></p>'
            '<p class="muted">✔/✘: below the same-person threshold (forgotten) or not; id_preservation should stay '
            'high.</p></section>'
            f'<script type="application/json" id="dial-data">{payload}</script><script>{_DIAL_JS}</script>')


def _metrics_table(metrics: dict) -> str:
    rows = []
    for key in _MAIN_KEYS:
        if key not in metrics:
            continue
        rows.append(
            f"<tr><th>{key} {_DIRECTION[key]}</th><td class=num>{_fmt(metrics.get(key))}</td>"
            f"<td class=num>{_fmt(metrics.get(f'{key}_ci95'))}</td><td class=num>{_fmt(metrics.get(f'{key}_n'))}</td>"
            f"<td>{html.escape(DEFINITIONS[key])}</td></tr>"
        )
    main = ""
    if rows:
        main = ("<table><tr><th>metric</th><th>value</th><th>95% interval</th><th>n</th><th>definition</th></tr>"
                + "".join(rows) + "</table>")
        names = {"identity_model": "judge", "loss_identity_model": "loss's identity model",
                 "fid_features": "FID features"}
        extra = [f"{names[k]}: {metrics[k]}" for k in names if metrics.get(k)]
        if metrics.get("judge_is_trainer"):
            extra.append("the judge is also the trainer: no verdict below can be ✔")
        if metrics.get("views"):
            extra.append(f"{metrics['views']} views per latent")
        if extra:
            main += f'<p class="muted">{html.escape("; ".join(extra))}. Identity intervals: t-intervals over ' \
                    "latents (over views for a single forgotten latent); FID intervals: ±1.96 bootstrap s.d.</p>"
    skip = set(_MAIN_KEYS) | {f"{k}_{s}" for k in _MAIN_KEYS for s in ("n", "ci95")}
    rest = [(k, v) for k, v in metrics.items() if k not in skip]
    details = ""
    if rest:
        details = ("<h2>Details</h2><table>" + "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rest) + "</table>")
    return main + details


def write_report(out_dir: str | Path, metrics: dict, images: dict[str, Path], plots: dict[str, Path],
                 title: str, dial: dict | None = None, headline: list[dict] | None = None) -> Path:
    """Write `out_dir/report.html`: headline numbers, pictures, plots, then the metrics with definitions.

    `images` and `plots` map a caption to a PNG; entries whose file is missing are left out, as are empty
    sections. Everything is inlined, so the page can be mailed or archived on its own. The headline cards
    are the image metrics' (`id_target`, …, with their verdicts) unless `headline` gives a backend's own:
    dicts of `label`, `value`, `note` and `verdict` (`passed`, `rule`, `meaning`; or None).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cards = _cards(metrics or {}) if headline is None else (
        '<div class="cards">' + "".join(_card(c["label"], html.escape(str(c["value"])), html.escape(c.get("note", "")),
                                              c.get("verdict")) for c in headline) + "</div>")
    parts = [f"<h1>{html.escape(title)}</h1>", cards]
    if dial:
        parts.append(_dial(dial))
    pictures = _figures(images or {})
    if pictures:
        parts += ["<h2>Pictures</h2>", *pictures]
    figures = _figures(plots or {})
    if figures:
        parts += ["<h2>Plots</h2>", *figures]
    if metrics:
        parts += ["<h2>Metrics</h2>", _metrics_table(metrics)]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(p for p in parts if p) + "\n</body></html>\n"
    )
    path = out_dir / REPORT_NAME
    atomic_write_text(path, page)
    return path
