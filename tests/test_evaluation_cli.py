"""`legato generate | evaluate | sweep` end to end on the built-in toy generator and a bundle written here."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from legato.cli.generate import parse_seeds
from legato.cli.main import main
from legato.cli.sweep import parse_strengths
from legato.errors import InputError
from legato.generators import load
from legato.ode import attach, save_bundle


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An adapter bundle for the toy generator (a non-trivial field) with its stored target latent."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    gen = load("toy")
    adapters = attach(gen, gen.adapter_sites(), hidden=8)
    with torch.no_grad():
        for p in adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    folder = tmp_path_factory.mktemp("run") / "adapter"
    save_bundle(adapters, folder)
    ws = gen.mapping(torch.randn(3, gen.z_dim, generator=torch.Generator().manual_seed(4)))
    save_file({"ws": ws[:1].contiguous(), "held_out_ws": ws[1:].contiguous()}, str(folder / "target_ws.safetensors"))
    adapters.detach()
    yield folder
    torch.set_num_threads(before)


def test_generate_grid_with_and_without_adapter(run_dir, tmp_path):
    assert main(["generate", "-g", "toy", "--seeds", "0-3", "--views", "2", "--out", str(tmp_path / "a.png")]) == 0
    assert main(["generate", "-g", "toy", "--adapter", str(run_dir), "--strength", "0", "--seeds", "0-3",
                 "--views", "2", "--out", str(tmp_path / "b.png")]) == 0
    assert main(["generate", "-g", "toy", "--adapter", str(run_dir), "--seeds", "0-3", "--views", "2",
                 "--out", str(tmp_path / "c.png")]) == 0
    assert main(["generate", "-g", "toy", "--adapter", str(run_dir), "--seeds", "0-3", "--compare",
                 "--out", str(tmp_path / "d.png")]) == 0
    a, b, c = (torch.tensor(list(Image.open(tmp_path / f"{k}.png").tobytes())) for k in "abc")
    assert torch.equal(a, b)  # strength 0 is the source generator, pixel for pixel
    assert not torch.equal(a, c)
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == ((2 * 18 + 2) * 8, (4 * 18 + 2) * 8)  # 2 views × 4 seeds, 16 px tiles enlarged 8×
    with Image.open(tmp_path / "d.png") as im:
        assert im.size == ((2 * 18 + 2) * 8, (4 * 18 + 2) * 8)  # one seed per row: source | unlearned


def test_evaluate_uses_the_stored_identity(run_dir, tmp_path):
    out = tmp_path / "m.json"
    assert main(["evaluate", "-g", "toy", "--adapter", str(run_dir), "--n-random", "8", "--n-fid", "16",
                 "--n-views", "3", "--fid-bootstrap", "3", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["id_others_n"] == 2 and m["id_target_n"] == 3 and m["fid_pre_n"] == 16
    assert m["fid_features"] == "toy-id.features" and m["strength"] == 1.0
    assert m["id_target"] < 1.0 and m["fid_pre"] > 0
    out0 = tmp_path / "m0.json"
    assert main(["evaluate", "-g", "toy", "--adapter", str(run_dir), "--identity", "seed:5", "--strength", "0",
                 "--n-random", "8", "--n-fid", "0", "--n-views", "3", "--out", str(out0)]) == 0
    m0 = json.loads(out0.read_text())
    assert m0["id_target"] == pytest.approx(1.0, abs=1e-6) and "id_others" not in m0


def test_sweep_writes_json_plot_and_strip(run_dir, tmp_path):
    assert main(["sweep", "-g", "toy", "--adapter", str(run_dir), "--strengths", "0:1:3", "--n-random", "4",
                 "--n-views", "2", "--out", str(tmp_path / "s")]) == 0
    result = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [p["strength"] for p in result["points"]] == [0.0, 0.5, 1.0]
    assert result["strength0_max_abs_diff"] == 0.0 and "spearman" in result
    for name in ("sweep.png", "fade_strip.png"):
        assert (tmp_path / "s" / name).stat().st_size > 100


@pytest.mark.parametrize("args, message", [
    (["generate", "-g", "toy", "--seeds", "3-1", "--out", "{tmp}/g.png"], "--seeds"),
    (["sweep", "-g", "toy", "--adapter", "{run}", "--strengths", "0:2:3", "--out", "{tmp}/s"], "[0, 1]"),
    (["evaluate", "-g", "toy", "--adapter", "{run}", "--identity", "seed:x", "--out", "{tmp}/m.json"], "seed:"),
    (["sweep", "-g", "toy", "--adapter", "{tmp}", "--out", "{tmp}/s"], "adapter bundle"),
])
def test_user_mistakes_exit_2_with_one_line(run_dir, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.slow
def test_no_traceback_from_the_command_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "legato.cli.main", "evaluate", "-g", "toy", "--adapter",
                        str(tmp_path / "nope"), "--out", str(tmp_path / "m.json")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "does not exist" in r.stderr


def test_parsers():
    assert parse_seeds("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_strengths("0:1:5") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_strengths("0,0.3,1") == [0.0, 0.3, 1.0]
    for bad in ("a-b", "", "-3"):
        with pytest.raises(InputError):
            parse_seeds(bad)
    for bad in ("0:1", "0:1:0", "0,2", "x"):
        with pytest.raises(InputError):
            parse_strengths(bad)
