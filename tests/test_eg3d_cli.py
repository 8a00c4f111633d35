"""A tiny EG3D network in the NVlabs pickle format goes through `legato unlearn`, projection included."""

import copy
import json

import pytest
import torch

pytest.importorskip("legato.generators.stylegan2.layers", reason="needs the native StyleGAN2 layers")
nvlabs = pytest.importorskip("legato.generators.nvlabs", reason="needs the NVlabs pickle reader/writer")

from legato.generators.eg3d.loading import network_parts  # noqa: E402
from legato.generators.eg3d.triplane import TriPlaneGenerator  # noqa: E402
from test_eg3d_generator import TINY, _randomise  # noqa: E402


@pytest.fixture(scope="module")
def fixture_pickle(tmp_path_factory):
    torch.manual_seed(0)
    net = TriPlaneGenerator(**copy.deepcopy(TINY))
    _randomise(net)
    net.neural_rendering_resolution = 16
    net.eval()
    path = tmp_path_factory.mktemp("eg3d") / "tiny_eg3d.pkl"
    nvlabs.write_network_pickle(path, {"G_ema": network_parts(net, TINY)})
    return path, net


def test_fixture_pickle_loads_by_name_and_renders_like_the_network(fixture_pickle):
    from legato.generators import load

    path, net = fixture_pickle
    gen = load(str(path))
    assert gen.name == "eg3d" and gen.neural_rendering_resolution == 16
    for name, t in net.state_dict().items():
        assert torch.equal(gen.net.state_dict()[name], t), name
    ws = gen.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        torch.manual_seed(1)
        ours = gen.synthesis(ws, gen.views(1))
        torch.manual_seed(1)
        direct = net.synthesis(ws, gen.views(1), noise_mode="const")["image"]
    assert torch.equal(ours, direct)


@pytest.mark.slow  # ~25 s on an idle 2-core CPU: 300 projection steps + 5 iterations + evaluation
def test_unlearn_cli_on_the_fixture_with_a_photo(fixture_pickle, tmp_path):
    from typer.testing import CliRunner

    from legato.cli.main import app
    from legato.generators import load
    from legato.inversion.images import save_image

    path, _ = fixture_pickle
    gen = load(str(path))
    with torch.no_grad():
        photo = gen.synthesis(gen.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(7))))
    save_image(photo, tmp_path / "person.png")
    out = tmp_path / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, [
            "unlearn", "--generator", str(path), "--identity", str(tmp_path / "person.png"), "--iters", "5",
            "--out", str(out), "--identity-model", "synthfaces", "--identity-crop", "align", "--n-random", "4",
            "--n-fid", "0", "--eval-every", "5"])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["identity"]["kind"] == "photo"
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["target_sites"] == [f"net.backbone.synthesis.b{r}.conv1" for r in (8, 16, 32)]


def test_rendering_options_reach_the_loaded_network(fixture_pickle):
    from legato.errors import InputError
    from legato.generators import load
    from legato.generators.eg3d import EG3DOptions

    path, _ = fixture_pickle
    gen = load(str(path), device="cpu", eg3d_options=EG3DOptions(neural_rendering_resolution=8, ray_chunk=17,
                                                                  gradient_checkpointing=True))
    assert gen.neural_rendering_resolution == 8
    assert gen.net.renderer.ray_chunk == 17 and gen.net.renderer.checkpoint
    ws = gen.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        img = gen.synthesis(ws, gen.views(1))
    assert img.shape[-1] == gen.img_resolution  # super-resolution still lifts to the output size
    with pytest.raises(InputError):
        load("synthfaces", eg3d_options=EG3DOptions(neural_rendering_resolution=8))
