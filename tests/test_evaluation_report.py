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
