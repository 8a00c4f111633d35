"""Projection of photos into W / W+ (legato.inversion.projection), on the tiny toy generator."""

import pytest
import torch

from legato.errors import InputError
from legato.generators.toy import ToyGenerator
from legato.inversion.projection import EncoderInverter, ProjectionConfig, Projector, perceptual_distance


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: extra threads only add contention
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    g = ToyGenerator()
    z = torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ws = g.mapping(z)
        images = g.synthesis(ws, g.views(1).expand(2, -1))
    return g, ws, images


def _error(g, ws, images):
    with torch.no_grad():
        return (g.synthesis(ws, g.views(1).expand(ws.shape[0], -1)) - images).pow(2).mean().item()


@pytest.mark.parametrize("space", ["w", "w+"])
def test_projection_reconstructs_the_photo(setup, space):
    g, _, images = setup
    proj = Projector(g, ProjectionConfig(steps=40, space=space, w_samples=500))
    with torch.no_grad():  # the lead's resolve_identity calls the inverter under no_grad
        ws = proj(images)
    assert ws.shape == (2, g.num_ws, g.w_dim)
    start = g.w_avg[None, None].repeat(2, g.num_ws, 1)
    assert _error(g, ws, images) < 0.2 * _error(g, start, images)
    if space == "w":
        assert torch.allclose(ws, ws[:, :1].expand_as(ws))
    else:
        assert not torch.allclose(ws, ws[:, :1].expand_as(ws))
    losses = [h["loss"] for h in proj.history]
    assert min(losses[-10:]) < losses[0]


def test_projection_is_deterministic_and_refine_starts_from_the_given_latent(setup):
    g, ws_true, images = setup
    cfg = ProjectionConfig(steps=20, w_samples=200)
    a = Projector(g, cfg)(images)
    b = Projector(g, cfg)(images)
    assert torch.equal(a, b)
    proj = Projector(g, cfg)
    assert torch.equal(proj.refine(images, ws_true, steps=0), ws_true)
    refined = proj.refine(images, ws_true + 0.5, steps=30)
    assert _error(g, refined, images) < _error(g, ws_true + 0.5, images)


def test_identity_term_is_used_when_a_model_is_given(setup):
    g, _, images = setup
    proj = Projector(g, ProjectionConfig(steps=3, w_samples=100), identity_model=g.identity_model())
    proj(images)
    assert "identity" in proj.history[0]
    proj = Projector(g, ProjectionConfig(steps=3, w_samples=100))
    proj(images)
    assert "identity" not in proj.history[0]


def test_bad_inputs_are_refused(setup):
    g, _, images = setup
    with pytest.raises(InputError):
        Projector(g, ProjectionConfig(space="z"))
    with pytest.raises(InputError):
        Projector(g, ProjectionConfig(steps=2, w_samples=100))(images[:, :1])
    with pytest.raises(InputError):
        perceptual_distance("nope")


def test_encoder_entry_point(setup):
    g, ws_true, images = setup
    w = ws_true[:, 0]
    inv = EncoderInverter(g, lambda x: w)
    assert torch.equal(inv(images), ws_true)
    offsets = EncoderInverter(g, lambda x: (w - g.w_avg), offsets=True)
    assert torch.allclose(offsets(images), ws_true, atol=1e-6)
    with pytest.raises(InputError):
        EncoderInverter(g, lambda x: torch.zeros(2, 3))(images)
    refined = inv.refine(images, ws_true + 0.3, steps=10)
    assert refined.shape == ws_true.shape
