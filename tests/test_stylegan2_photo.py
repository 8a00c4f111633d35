"""StyleGAN2 from a photo: projection through `Generator.inverter()`, FFHQ alignment of photos, the noise maps."""

from pathlib import Path

import pytest
import torch

from legato.generators.stylegan2.networks import StyleGAN2Generator
from legato.identity.framing import align_photo
from legato.inversion.images import load_image, save_image
from legato.inversion.projection import ProjectionConfig, Projector, PyramidDistance, noise_regularisation
from test_nvlabs_reader import SMALL, _randomised, _write

FFHQ_PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "ffhq" / "00072.png"


@pytest.fixture(scope="module")
def generator():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield StyleGAN2Generator(_randomised(SMALL)).eval()
    torch.set_num_threads(before)


def _made(g, seed=5):
    with torch.no_grad():
        ws = g.mapping(torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(seed)))
        return ws, g.synthesis(ws)


def test_every_generator_projects_by_default_and_recovers_an_image_it_made(generator):
    g = generator
    assert isinstance(g.inverter(), Projector) and g.photo_framing == "ffhq"
    ws_true, image = _made(g)
    with torch.no_grad():
        start = g.synthesis(g.w_avg[None, None].repeat(1, g.num_ws, 1))
        ws = Projector(g, ProjectionConfig(steps=150, space="w", w_samples=1000))(image)
        again = g.synthesis(ws)
    dist = PyramidDistance()
    assert float(dist(again, image)) < 0.05 * float(dist(start, image))
    assert float((again - image).pow(2).mean()) < 0.01 * float((start - image).pow(2).mean())


def test_optimised_noise_maps_are_put_back(generator):
    g = generator
    before = {n: b.clone() for n, b in g.named_buffers() if n.endswith("noise_const")}
    assert before
    _, image = _made(g)
    proj = Projector(g, ProjectionConfig(steps=5, optimize_noise=True, w_samples=200))
    with torch.no_grad():
        proj(torch.cat([image, image]))  # two images: one projection each, each with its own maps
    assert any("noise" in h for h in proj.history)
    after = dict(g.named_buffers())
    assert all(torch.equal(after[n], b) and not after[n].requires_grad for n, b in before.items())


def test_noise_regularisation_penalises_structure_not_noise():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(32, 32, generator=gen)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 36, 36, generator=gen), 5, 1)[0, 0]
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert float(noise_regularisation([smooth])) > 100 * float(noise_regularisation([white]))


@pytest.mark.skipif(not FFHQ_PHOTO.is_file(), reason="needs ../shared/data/faces")
def test_an_ffhq_photo_is_already_framed_and_a_shifted_one_is_framed_back(tmp_path):
    pytest.importorskip("dlib")
    from PIL import Image

    aligned = align_photo(FFHQ_PHOTO, 128, "ffhq")
    plain = load_image(FFHQ_PHOTO, 128)
    assert float((aligned - plain).abs().mean()) < 0.1  # FFHQ's own crop moves little
    with Image.open(FFHQ_PHOTO) as im:  # the same face, shrunk into a corner of a grey canvas
        canvas = Image.new("RGB", (1024, 1024), (128, 128, 128))
        canvas.paste(im.convert("RGB").resize((512, 512)), (480, 60))
        canvas.save(tmp_path / "shifted.png")
    shifted = align_photo(tmp_path / "shifted.png", 128, "ffhq")
    assert float((load_image(tmp_path / "shifted.png", 128) - plain).abs().mean()) > 0.3
    assert float((shifted - plain).abs().mean()) < 0.15


def test_a_photo_without_a_face_is_taken_as_framed_with_a_warning(tmp_path, capsys, generator):
    pytest.importorskip("dlib")
    _, image = _made(generator)
    save_image(image, tmp_path / "made.png")
    got = align_photo(tmp_path / "made.png", 32, "ffhq")
    assert "without face alignment" in capsys.readouterr().err
    assert torch.equal(got, load_image(tmp_path / "made.png", 32))
    assert torch.equal(align_photo(tmp_path / "made.png", 32, None), got)


def test_unlearn_cli_takes_a_photo_on_a_stylegan2_pickle(tmp_path, generator):
    import json

    from typer.testing import CliRunner

    from legato.cli.main import app

    path = _write(tmp_path / "g.pkl", _randomised(SMALL), SMALL)
    _, image = _made(generator)
    save_image(image, tmp_path / "person.png")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["unlearn", "--generator", str(path), "--identity", str(tmp_path / "person.png"),
                                      "--out", str(out), "--iterations", "2", "--n-random", "2", "--n-fid", "4"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["identity"]["kind"] == "photo" and (out / "adapter" / "adapter_config.json").is_file()
