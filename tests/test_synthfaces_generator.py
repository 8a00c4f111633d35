"""The SynthFaces generator: the Generator interface, camera handling, weights I/O and (slow) fidelity."""

import json

import pytest
import torch

from legato.errors import CheckpointError
from legato.synthfaces import params as P
from legato.synthfaces.generator import (
    WEIGHTS,
    GeneratorConfig,
    SynthFacesGenerator,
    load_generator,
    save_generator,
)

SMALL = GeneratorConfig(channels={4: 16, 8: 16, 16: 8, 32: 8, 64: 4}, w_dim=16, mapping_layers=2)


def test_interface_shapes_and_sites():
    g = SynthFacesGenerator(SMALL).eval()
    z = torch.randn(3, P.Z_DIM)
    ws = g.mapping(z)
    assert ws.shape == (3, g.num_ws, 16)
    img = g.synthesis(ws, g.views(3))
    assert img.shape == (3, 3, 64, 64)
    assert g.features(ws, g.views(3)).shape == (3, 8, 32, 32)
    modules = dict(g.named_modules())
    for site in g.adapter_sites():
        out = modules[site].out_channels
        assert isinstance(out, int) and out > 0
    assert len(g.adapter_sites()) == 4  # every block with an input: 8, 16, 32, 64
    assert torch.allclose(g.views(11)[:, 0].abs().max(), torch.tensor(P.VIEW_YAW))


def test_camera_changes_the_image_but_not_the_latent():
    g = SynthFacesGenerator(SMALL).eval()
    torch.nn.init.normal_(g.synthesis_network.camera_input.weight, std=0.5)
    ws = g.mapping(torch.randn(1, P.Z_DIM))
    left = g.synthesis(ws, torch.tensor([[-0.4, 0.0]]))
    right = g.synthesis(ws, torch.tensor([[0.4, 0.0]]))
    assert not torch.allclose(left, right)
    z = torch.randn(3, P.Z_DIM)  # the mapping is a function of z alone: a batch maps row by row
    assert torch.allclose(g.mapping(z)[1:2], g.mapping(z[1:2]), atol=1e-6)
    assert not torch.allclose(g.mapping(z[:1]), g.mapping(z[1:2]))


def test_truncation_pulls_to_w_avg():
    g = SynthFacesGenerator(SMALL).eval()
    g.w_average.normal_()
    z = torch.randn(2, P.Z_DIM)
    assert torch.allclose(g.mapping(z, truncation_psi=0.0), g.w_avg.expand(2, g.num_ws, -1))


def test_weights_round_trip_and_bad_files(tmp_path):
    g = SynthFacesGenerator(SMALL).eval()
    save_generator(g, tmp_path / "g.safetensors", recipe={"steps": 1})
    back = load_generator(path=tmp_path / "g.safetensors")
    z = torch.randn(2, P.Z_DIM)
    assert torch.allclose(back(z, back.views(2)), g(z, g.views(2)), atol=2e-2)  # stored as float16
    with pytest.raises(CheckpointError, match="missing"):
        load_generator(path=tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="legato synthfaces train generator"):
        load_generator(path=tmp_path / "bad.safetensors")


needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="shipped generator weights not built yet")


@needs_weights
def test_shipped_generator_loads_offline_frozen():
    from legato.generators import load

    g = load("synthfaces")
    assert isinstance(g, SynthFacesGenerator)
    assert not any(p.requires_grad for p in g.parameters())
    img = g(torch.randn(2, P.Z_DIM), g.views(2))
    assert img.shape == (2, 3, 64, 64) and img.min() >= -1.5 and img.max() <= 1.5


@pytest.mark.slow
@needs_weights
def test_generator_reproduces_the_renderer_and_keeps_identity_across_yaws():
    from legato.synthfaces.fidelity import measure_fidelity

    r = measure_fidelity(n=200)
    assert r["render_match_rate"] >= 0.95, r
    assert r["yaw_consistency_rate"] >= 0.95, r


def test_recipe_resumes_and_continues_with_a_second_cycle(tmp_path):
    import json

    from legato.synthfaces import train_generator as tg

    out = tmp_path / "g.safetensors"
    with pytest.raises(ValueError, match="does not exist"):
        tg.train(out, seconds=0.5, extend_seconds=0.5, threads=1, progress=False)
    first = tg.train(out, seconds=0.5, batch_size=2, threads=1, progress=False)
    assert first["steps"] >= 1 and len(first["cycles"]) == 1
    again = tg.train(out, seconds=0.5, batch_size=2, threads=1, progress=False)  # finished: nothing more to do
    assert again["steps"] == first["steps"]
    second = tg.train(out, seconds=0.5, batch_size=2, threads=1, progress=False, extend_seconds=0.5, edge_weight=1.0)
    assert second["steps"] > first["steps"]
    cycles = second["cycles"]
    assert len(cycles) == 2 and cycles[1]["start_step"] == first["steps"] and cycles[1]["edge_weight"] == 1.0
    assert cycles[0]["edge_weight"] == 0.0
    meta = json.loads(__import__("safetensors").safe_open(str(out), "pt").metadata()["recipe"])
    assert meta["steps"] == second["steps"]


def test_edge_term_sees_what_plain_l1_misses():
    from legato.synthfaces.train_generator import loss_fn

    real = torch.zeros(1, 3, 8, 8)
    real[..., ::2] = 1.0  # a fine stripe pattern
    flat = torch.full_like(real, 0.5)  # its blur: the same mean, no edges
    assert loss_fn(flat, real, edge_weight=1.0) > loss_fn(flat, real) + 0.5
    assert torch.isclose(loss_fn(real, real, edge_weight=1.0), torch.tensor(0.0))


def test_a_third_cycle_extends_a_finished_second(tmp_path):
    from legato.synthfaces import train_generator as tg

    out = tmp_path / "g.safetensors"
    tg.train(out, seconds=0.3, batch_size=2, threads=1, progress=False)
    second = tg.train(out, batch_size=2, threads=1, progress=False, extend_seconds=0.3)
    third = tg.train(out, batch_size=2, threads=1, progress=False, extend_seconds=0.3, colour_weight=2.0)
    assert len(second["cycles"]) == 2 and len(third["cycles"]) == 3
    assert third["steps"] > second["steps"] and third["cycles"][2]["colour_weight"] == 2.0
    assert all(c["finished"] for c in third["cycles"])


def test_colour_term_sees_a_wrong_hue_in_a_few_pixels():
    from legato.synthfaces.train_generator import colour_loss, loss_fn

    real = torch.zeros(1, 3, 16, 16)
    masks = torch.zeros(1, 2, 16, 16)
    masks[0, 0, 7:9, 7:9] = 1.0  # a four-pixel "iris"; the second feature is absent
    real[0, 2, 7:9, 7:9] = 1.0  # blue
    wrong = real.clone()
    wrong[0, 2, 7:9, 7:9], wrong[0, 0, 7:9, 7:9] = 0.0, 1.0  # red
    assert loss_fn(wrong, real) < 0.05  # four pixels of 256: plain L1 hardly notices
    assert colour_loss(wrong, real, masks) > 0.6  # the mean colour in the mask differs by 2/3 per channel
    assert colour_loss(real, real, masks) == 0.0


def test_outline_term_charges_a_feature_painted_wider_than_it_is():
    from legato.synthfaces.train_generator import colour_loss, outline_loss

    real = torch.zeros(1, 3, 16, 16)
    masks = torch.zeros(1, 1, 16, 16)
    masks[0, 0, 7:9, 5:11] = 1.0  # thin "lips"
    real[0, 0, 7:9, 5:11] = 1.0
    patch = torch.zeros_like(real)
    patch[0, 0, 5:11, 3:13] = 1.0  # the same colour, painted as a wide patch over and around them
    assert colour_loss(patch, real, masks) == 0.0  # the colour term cannot tell
    # the ring around the lips is red where the render is not: 1/3 per channel there, averaged with the inside
    assert outline_loss(patch, real, masks) > 0.15
    assert outline_loss(real, real, masks) == 0.0


def test_an_outline_cycle_is_recorded(tmp_path):
    from legato.synthfaces import train_generator as tg

    out = tmp_path / "g.safetensors"
    tg.train(out, seconds=0.3, batch_size=2, threads=1, progress=False)
    second = tg.train(out, batch_size=2, threads=1, progress=False, extend_seconds=0.3, outline_weight=3.0)
    assert second["cycles"][1]["outline_weight"] == 3.0 and second["cycles"][0]["outline_weight"] == 0.0


def test_mouth_weight_weighs_the_mouth_region_alone_and_is_recorded(tmp_path):
    from legato.synthfaces import params as P
    from legato.synthfaces import train_generator as tg
    from legato.synthfaces.renderer import feature_regions

    _, _, _, plain, _ = tg._batch(4, torch.Generator().manual_seed(3), region_weight=4.0)
    g = torch.Generator().manual_seed(3)
    _, _, _, weight, _ = tg._batch(4, g, region_weight=4.0, mouth_weight=8.0)
    # the same draw again, to know where the regions are
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, P.Z_DIM, generator=g)
    cam = P.random_camera(4, generator=g)
    regions = feature_regions(*P.split(P.z_to_params(z)), cam)
    mouth, eyes = regions["mouth"][:, None] > 0.99, regions["eyes"][:, None] > 0.99
    assert mouth.any() and eyes.any()
    assert torch.allclose(weight[mouth], plain[mouth] + 8.0)  # 8 more inside the mouth region
    assert torch.equal(weight[eyes & ~mouth], plain[eyes & ~mouth])  # the eyes keep the region weight only
    out = tmp_path / "g.safetensors"
    tg.train(out, seconds=0.3, batch_size=2, threads=1, progress=False)
    second = tg.train(out, batch_size=2, threads=1, progress=False, extend_seconds=0.3, region_weight=4.0,
                      mouth_weight=8.0)
    assert second["cycles"][1]["mouth_weight"] == 8.0 and second["cycles"][0]["mouth_weight"] == 0.0


@pytest.mark.parametrize("term", ["mouth_weight", "region_weight", "adversarial_weight"])
def test_a_negative_loss_weight_is_refused_before_training(tmp_path, term):
    from legato.errors import InputError
    from legato.synthfaces import train_generator as tg

    out = tmp_path / "g.safetensors"
    with pytest.raises(InputError, match=term.removesuffix("_weight") + " -2"):
        tg.train(out, seconds=0.3, batch_size=2, threads=1, progress=False, **{term: -2.0})
    assert not out.exists() and not out.with_suffix(".ckpt.pt").exists()


def test_mouth_crops_are_centred_on_the_mouth_and_pass_gradients():
    from legato.synthfaces import params as P
    from legato.synthfaces import train_generator as tg
    from legato.synthfaces.renderer import feature_regions

    marked = torch.zeros(2, 3, 64, 64)
    marked[0, :, 40, 20] = 1.0  # one bright pixel at x 20, y 40
    marked[1, :, 10, 50] = 1.0
    marked.requires_grad_(True)
    crops = tg.mouth_crops(marked, torch.tensor([[20.0, 40.0], [50.0, 10.0]]), size=8, out=16)
    assert crops.shape == (2, 3, 16, 16)
    peak = crops[:, 0].flatten(1).argmax(1)
    rows, cols = peak // 16, peak % 16
    assert ((rows - 7.5).abs() <= 1).all() and ((cols - 7.5).abs() <= 1).all()  # the marked pixel is central
    crops.sum().backward()
    assert marked.grad[0, 0, 40, 20] > 0 and marked.grad[0, 0, 5, 5] == 0  # only the cropped pixels
    # the centres sit inside each latent's mouth region
    z, cam = torch.randn(6, P.Z_DIM, generator=torch.Generator().manual_seed(1)), P.random_camera(6)
    centres = tg.mouth_centres(z, cam)
    regions = feature_regions(*P.split(P.z_to_params(z)), cam)["mouth"]
    x, y = centres.round().long().unbind(1)
    assert (regions[torch.arange(6), y, x] == 1).all()


def test_a_mouth_critic_cycle_is_recorded_and_its_critic_resumes(tmp_path):
    from legato.synthfaces import train_generator as tg

    out = tmp_path / "g.safetensors"
    # counted steps, not seconds: the log writes a line every 25 steps, and step 25 must fall in the critic's
    # cycle on any machine (a timed cycle of 0.5 s ran 3 to 6 steps on a busy one, so nothing was logged)
    tg.train(out, seconds=0.3, steps=1, batch_size=2, threads=1, progress=False)
    second = tg.train(out, steps=25, batch_size=2, threads=1, progress=False, extend_seconds=0.5,
                      mouth_critic_weight=0.2)
    assert second["cycles"][1]["mouth_critic_weight"] == 0.2 and second["cycles"][0]["mouth_critic_weight"] == 0.0
    assert second["steps"] == 25 and second["cycles"][1]["start_step"] == 1
    ck = torch.load(out.with_suffix(".ckpt.pt"), weights_only=True)
    assert "mouth_critic" in ck and "mouth_critic_opt" in ck
    logged = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "mouth_critic_loss" in r] == [25]
    third = tg.train(out, batch_size=2, threads=1, progress=False, extend_seconds=0.3)
    ck3 = torch.load(out.with_suffix(".ckpt.pt"), weights_only=True)
    assert third["cycles"][2]["mouth_critic_weight"] == 0.0
    # a cycle without the term carries the critic on unchanged (a fresh one would have new random weights)
    assert all(torch.equal(ck3["mouth_critic"][k], v) for k, v in ck["mouth_critic"].items())
