"""The HTML report: self-contained, optional sections left out, and rendered by headless Chromium."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from legato.evaluation.images import before_after_grid, save_grid
from legato.evaluation.report import write_report

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser")
                             or "") if p and Path(p).is_file()), None)
METRICS = {"method": "legato", "id_target": 0.12, "id_target_n": 11, "id_target_ci95": [0.1, 0.14],
           "id_preservation": 0.93, "id_preservation_n": 100, "id_preservation_ci95": [0.92, 0.94],
           "fid_pre": 3.5, "fid_pre_n": 1000, "fid_pre_ci95": [3.1, 3.9], "delta_fid_real": None,
           "delta_fid_real_n": 0, "identity_model": "tiny-id", "fid_features": "tiny-id.features", "views": 11,
           "identity": {"description": "seed 3"}}


def _pictures(tmp_path):
    g = torch.Generator().manual_seed(0)
    grid = save_grid(torch.rand(6, 3, 16, 16, generator=g) * 2 - 1, tmp_path / "grid.png", nrow=3)
    plot = save_grid(torch.linspace(-1, 1, 3 * 32 * 32).view(1, 3, 32, 32), tmp_path / "plot.png", nrow=1)
    return {"Before and after": grid, "Missing picture": tmp_path / "nope.png"}, {"A plot": plot}


def test_report_is_self_contained_and_skips_missing_files(tmp_path):
    images, plots = _pictures(tmp_path)
    path = write_report(tmp_path / "out", METRICS, images, plots, title="Forgetting <seed 3>")
    page = path.read_text()
    assert path.name == "report.html"
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == (tmp_path / "grid.png").read_bytes()
    assert "Missing picture" not in page and "nope.png" not in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "Forgetting &lt;seed 3&gt;" in page  # escaped
    for key in ("id_target", "id_preservation", "fid_pre", "delta_fid_real"):
        assert f"<th>{key}" in page
    assert "1,000" in page and "[3.1000, 3.9000]" in page  # sample size and interval
    assert "Cosine similarity" in page  # the one-line definitions


def test_report_without_pictures_or_metrics_has_no_empty_sections(tmp_path):
    page = write_report(tmp_path, {}, {}, {}, title="empty").read_text()
    assert "<h2>" not in page and "<img" not in page


def test_grids_are_png_of_the_right_layout(tmp_path):
    images = torch.full((5, 3, 16, 16), -1.0)
    images[1] = 1.0
    path = save_grid(images, tmp_path / "g.png", nrow=2)
    arr = np.asarray(Image.open(path).convert("RGB"))
    scale = 128 // 16  # small images are enlarged (nearest) so faces are visible
    assert arr.shape == ((3 * 18 + 2) * scale, (2 * 18 + 2) * scale, 3)
    assert arr[(2 + 8) * scale, (20 + 8) * scale].tolist() == [255, 255, 255]  # tile 1 is white
    assert arr[(2 + 8) * scale, (2 + 8) * scale].tolist() == [0, 0, 0]  # tile 0 is black


def test_before_after_grid_rows(tmp_path):
    from _evaluation_tiny import NoisyGenerator, TinyGenerator

    source, other = TinyGenerator(), NoisyGenerator()
    ws = source.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)))
    path = before_after_grid(source, other, ws, source.views(3), tmp_path / "ba.png")
    with Image.open(path) as im:
        assert im.size == ((3 * 10 + 2) * 16, (4 * 10 + 2) * 16)  # 3 views × (2 source + 2 unlearned rows)


needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="Chromium is not installed (the CI set-up installs Debian's chromium)")


def _chromium(tmp_path, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@needs_chromium
def test_report_renders_in_headless_chromium_without_broken_images(tmp_path):
    images, plots = _pictures(tmp_path)
    report = write_report(tmp_path / "out", METRICS, images, plots, title="render check")
    # a copy with a probe that records, after load, how many images failed to decode
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace(
        "</body>",
        "<script>addEventListener('load',()=>{const i=[...document.images];document.body.setAttribute("
        "'data-probe',JSON.stringify({n:i.length,broken:i.filter(x=>!x.complete||x.naturalWidth===0).length,"
        "w:i.map(x=>x.naturalWidth)}))})</script></body>"))
    dom = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    found = re.search(r"data-probe=\"([^\"]+)\"", dom.stdout)
    assert found, f"no probe result; chromium said: {dom.stderr[-500:]}"
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["n"] == 2 and result["broken"] == 0 and all(w > 0 for w in result["w"])


@pytest.mark.slow
@needs_chromium
def test_report_screenshot_is_not_blank(tmp_path):
    images, plots = _pictures(tmp_path)
    report = write_report(tmp_path / "out", METRICS, images, plots, title="render check")
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", report.as_uri())
    arr = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert arr.std() > 10  # something was drawn, not a blank page


def _dial(tmp_path):
    frames = []
    for k, shade in enumerate((-1.0, 1.0)):  # strength 0: black faces; strength 1: white faces
        pair = []
        for name in ("target", "other"):
            pair.append(save_grid(torch.full((1, 3, 16, 16), shade), tmp_path / f"{name}{k}.png", nrow=1, padding=0))
        frames.append(tuple(pair))
    points = [{"strength": 0.0, "id_target": 0.99, "id_preservation": 1.0},
              {"strength": 1.0, "id_target": 0.1, "id_preservation": 0.96}]
    return {"strengths": [0.0, 1.0], "points": points, "frames": frames, "threshold": 0.78}


def test_headline_numbers_carry_verdicts(tmp_path):
    metrics = {**METRICS, "threshold": 0.78, "id_others": 0.9, "id_others_n": 4, "fid_pre_floor": 5.0,
               "id_preservation_n": 32, "id_preservation_lost": 2,
               "target_sharpness": 0.002, "target_sharpness_percentile": 40.0, "target_plausible": True,
               "ordinary_sharpness_range": [0.001, 0.004]}
    page = write_report(tmp_path / "out", metrics, {}, {}, title="verdicts").read_text()
    cards = re.findall(r'<div class="card( pass| fail)?">(.*?)</div>', page)
    by_label = {re.search(r"<span>(.*?)</span>", body).group(1): (cls.strip(), body) for cls, body in cards}
    assert by_label["id_target ↓"][0] == "pass" and "✔" in by_label["id_target ↓"][1]
    assert by_label["id_others ↓"][0] == "fail" and "✘" in by_label["id_others ↓"][1]
    assert "still recognises" in by_label["id_others ↓"][1]
    assert by_label["id_preservation ↑"][0] == "fail"  # 0.93 < 0.95
    assert "2 of 32 no longer recognised as themselves" in by_label["id_preservation ↑"][1]
    assert by_label["fid_pre ↓"][0] == "pass" and "5.000" in by_label["fid_pre ↓"][1]
    assert by_label["forgotten face: sharpness"][0] == "pass"
    assert "<script" not in page  # no dial, no script


def test_dial_is_embedded_with_every_strength(tmp_path):
    page = write_report(tmp_path / "out", METRICS, {}, {}, title="dial", dial=_dial(tmp_path)).read_text()
    data = json.loads(re.search(r'<script type="application/json" id="dial-data">(.*?)</script>', page).group(1))
    assert data["strengths"] == [0.0, 1.0] and len(data["frames"]) == 2
    assert all(uri.startswith("data:image/png;base64,") for pair in data["frames"] for uri in pair)
    assert data["frames"][0][0] != data["frames"][1][0]
    assert 'type="range"' in page and "http://" not in page and "https://" not in page


@needs_chromium
def test_dial_slider_changes_the_faces_in_headless_chromium(tmp_path):
    report = write_report(tmp_path / "out", METRICS, {}, {}, title="dial", dial=_dial(tmp_path))
    shots = []
    for k in (0, 1):
        shot = tmp_path / f"s{k}.png"
        _chromium(tmp_path, "--window-size=900,700", f"--screenshot={shot}", report.as_uri() + f"#s={k}")
        shots.append(np.asarray(Image.open(shot).convert("L"), dtype=np.float32))
    assert shots[0].shape == shots[1].shape
    changed = np.abs(shots[0] - shots[1]) > 100  # black faces turned white
    assert changed.sum() > 2 * 150 * 150  # both 192-pixel frames changed (most of their area)
    rows, cols = np.nonzero(changed)
    assert cols.max() - cols.min() > 300  # the two frames side by side, not one
