"""`legato.identity.load`: the synthfaces spec and adapting a plain embedding network."""

import pytest
import torch
from torch import nn

import legato.synthfaces
from legato.errors import InputError
from legato.identity import IdentityModel, load
from legato.identity.wrapped import as_identity_model


class _Encoder(nn.Module):
    threshold = 0.7

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3 * 8 * 8, 16)

    def forward(self, x):
        return self.proj(nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))


def test_synthfaces_spec_returns_the_world_encoder_as_an_identity_model(monkeypatch):
    torch.manual_seed(0)
    encoder = _Encoder()
    monkeypatch.setattr(legato.synthfaces, "load_identity_model", lambda: encoder, raising=False)
    model = load("synthfaces")
    assert isinstance(model, IdentityModel) and model.name == "synthfaces"
    assert model.threshold == 0.7 and model.differentiable
    images = (torch.rand(3, 3, 32, 32) * 2 - 1).requires_grad_()
    emb = model.embed(images)
    assert emb.shape == (3, 16) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    emb.sum().backward()
    assert images.grad.abs().sum() > 0
    # the encoder's threshold decides: an embedding matches itself (cosine 1), not its opposite (−1), and a
    # pair at cosine 0.6 (below the encoder's 0.7, above the default 0.5) is two people
    e = emb.detach()[0]
    across = torch.linalg.svd(emb.detach()).Vh[-1]  # a unit vector at right angles to every embedding
    other = 0.6 * e + 0.8 * across
    assert model.similarity(e, other).item() == pytest.approx(0.6, abs=1e-5)
    assert model.same_person(e, torch.stack([e, -e, other])).tolist() == [True, False, False]
    with pytest.raises(InputError, match="not real photos"):
        model.embed_photos(["face.png"])


def test_an_identity_model_is_passed_through_and_junk_is_refused():
    model = as_identity_model(_Encoder(), "x")
    assert as_identity_model(model, "y") is model
    with pytest.raises(TypeError):
        as_identity_model(42, "z")
    with pytest.raises(InputError, match=r"\[N, 3, H, W\]"):
        model.embed(torch.rand(3, 32, 32))


def test_missing_dlib_packages_say_which_extra_to_install(monkeypatch):
    import importlib.util
    import sys

    from legato.identity import faces

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    expected = r"face-recognition-models is not installed.*\[dlib\]"
    with pytest.raises(faces.MissingDependencyError, match=expected):
        faces.model_file("recognition")
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    with pytest.raises(faces.MissingDependencyError, match="dlib is not installed"):
        faces.import_dlib()


def test_synthfaces_spec_with_the_shipped_encoder():
    encoder_module = pytest.importorskip("legato.synthfaces.identity_encoder")
    if not encoder_module.IDENTITY_WEIGHTS.is_file():
        pytest.skip("the SynthFaces identity encoder weights are not built")
    model = load("synthfaces")
    assert model.dim > 0 and 0 < model.threshold < 1 and model.differentiable
    emb = model.embed(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert emb.shape == (2, model.dim) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
