"""SynthFaces identity encoder and inversion encoder: recipes, file format, loading, behaviour, CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from legato.cli.main import main
from legato.errors import CheckpointError
from legato.synthfaces import load_identity_model, load_inverter, photos
from legato.synthfaces.identity_encoder import IDENTITY_WEIGHTS, read_metadata
from legato.synthfaces.inverter import INVERTER_WEIGHTS
from legato.synthfaces.params import N_PARAMS
from legato.synthfaces.train_identity import (
    IdentityTrainConfig,
    augment,
    best_threshold,
    verification_pairs,
)
from legato.synthfaces.train_identity import train as train_identity
from legato.synthfaces.train_inverter import InverterTrainConfig
from legato.synthfaces.train_inverter import train as train_inverter


@pytest.fixture(scope="module")
def tiny_identity(tmp_path_factory):
    path = tmp_path_factory.mktemp("id") / "identity.safetensors"
    cfg = IdentityTrainConfig(n_identities=20, ids_per_batch=4, photos_per_id=2, steps=3, eval_pairs=6)
    metrics = train_identity(path, seed=0, config=cfg)
    return path, metrics


@pytest.fixture(scope="module")
def tiny_inverter(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "inverter.safetensors"
    metrics = train_inverter(path, seed=0, config=InverterTrainConfig(batch=8, steps=2, eval_people=4))
    return path, metrics


class _StubGenerator(nn.Module):
    """A tiny differentiable stand-in for the SynthFaces generator (z → ws → image)."""

    num_ws, w_dim = 2, 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.map = nn.Linear(N_PARAMS, self.num_ws * self.w_dim)
        self.syn = nn.Linear(self.num_ws * self.w_dim + 2, 3 * 8 * 8)

    def mapping(self, z, c=None, truncation_psi=1.0):
        return self.map(z).view(-1, self.num_ws, self.w_dim)

    def synthesis(self, ws, c=None):
        x = torch.tanh(self.syn(torch.cat([ws.flatten(1), c], 1))).view(-1, 3, 8, 8)
        return nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)


def test_identity_model_file_and_api(tiny_identity):
    path, metrics = tiny_identity
    model = load_identity_model(path=path)
    meta = read_metadata(path)
    assert meta["format"] == "legato-synthfaces-identity"
    assert model.name == "synthfaces-id"
    assert model.threshold == pytest.approx(metrics["threshold"])
    x = photos(1_000_003, 3)
    emb = model.embed(x)
    assert emb.shape == (3, 128)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert model.features(x).shape == (3, 256)
    maps = model.feature_maps(x)
    assert [m.shape[-1] for m in maps] == [32, 16, 8]
    assert model.verify(x[:2], x[:2]).all()  # an image is always its own person
    # differentiable with respect to the input image
    y = x.clone().requires_grad_(True)
    model.embed(y)[:, 0].sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_missing_weights_raise_an_actionable_error(tmp_path):
    with pytest.raises(CheckpointError, match="legato synthfaces train identity"):
        load_identity_model(path=tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="legato synthfaces train inverter"):
        load_inverter(path=tmp_path / "nope.safetensors", with_generator=False)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_identity_model(path=bad)


def test_best_threshold_separates_scores():
    sims = torch.tensor([0.9, 0.8, 0.75, 0.2, 0.1, 0.3])
    same = torch.tensor([True, True, True, False, False, False])
    thr, acc = best_threshold(sims, same)
    assert acc == 1.0 and 0.3 < thr < 0.75
    thr2, acc2 = best_threshold(torch.tensor([0.9, 0.1, 0.5, 0.6]), torch.tensor([True, True, False, False]))
    assert acc2 == 0.75


def test_verification_pairs_are_labelled_and_held_out():
    a, b, same = verification_pairs(3)
    assert a.shape == b.shape == (6, 3, 64, 64)
    assert same.tolist() == [True] * 3 + [False] * 3
    assert not torch.equal(a[0], b[0])  # genuine pairs are different photos


def test_augment_keeps_range_and_changes_images():
    x = photos(5, 4)
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert (y - x).abs().mean() > 1e-3


def test_inverter_api_with_a_stub_generator(tiny_inverter):
    path, metrics = tiny_inverter
    assert {"identity_param_mae", "yaw_mae_deg"} <= set(metrics)
    gen = _StubGenerator()
    inv = load_inverter(generator=gen, path=path)
    x = photos(1_000_004, 2)
    assert inv.predict_params(x).shape == (2, N_PARAMS)
    assert inv.predict_camera(x).shape == (2, 2)
    ws = inv(x)
    assert ws.shape == (2, gen.num_ws, gen.w_dim)
    cam = inv.predict_camera(x)
    before = (gen.synthesis(ws, cam) - x).abs().mean()
    refined = inv.refine(x, ws, steps=15, lr=0.05, camera=cam, id_weight=0.0)
    after = (gen.synthesis(refined, cam) - x).abs().mean()
    assert after < before
    assert all(p.grad is None for p in gen.parameters())  # the generator is not touched


def test_inverter_refine_with_identity_loss(tiny_inverter, tiny_identity):
    gen = _StubGenerator()
    inv = load_inverter(generator=gen, path=tiny_inverter[0])
    idm = load_identity_model(path=tiny_identity[0])
    x = photos(1_000_005, 1)
    calls = []
    embed = idm.embed
    idm.embed = lambda images: calls.append(images.requires_grad) or embed(images)  # the model given is used
    out = inv.refine(x, steps=2, identity_model=idm)
    assert out.shape == (1, gen.num_ws, gen.w_dim) and not out.requires_grad
    assert calls == [False, True, True]  # the photo once (a fixed target), then each step's image, in the graph
    # the term moves the result: without it (pixels alone) the same steps end elsewhere (Adam's first steps
    # hardly depend on the gradient's size, so give it a few)
    with_id = inv.refine(x, steps=10, identity_model=idm)
    assert not torch.allclose(with_id, inv.refine(x, steps=10, id_weight=0.0), atol=1e-5)


def test_inversion_check_runs_end_to_end(tiny_inverter, tiny_identity):
    from legato.synthfaces.train_inverter import evaluate_inversion

    inv = load_inverter(generator=_StubGenerator(), path=tiny_inverter[0])
    idm = load_identity_model(path=tiny_identity[0])
    out = evaluate_inversion(inv, idm, n_people=2, other_photos=2, refine_steps=1)
    assert out["people"] == 2
    assert 0.0 <= out["verified_same_photo"] <= 1.0 and 0.0 <= out["verified_other_photos"] <= 1.0

    class Verifier:  # says "same person" for the first pair of every call; records what it was asked
        def __init__(self):
            self.calls = []

        def verify(self, a, b):
            self.calls.append((a.shape[0], b.shape[0]))
            return torch.arange(a.shape[0]) == 0

    judge = Verifier()
    out = evaluate_inversion(inv, judge, n_people=3, other_photos=2, batch=2)
    # two batches (2 + 1 people): the photo itself once per person, the other photos twice per person
    assert judge.calls == [(2, 2), (4, 4), (1, 1), (2, 2)]
    assert out["verified_same_photo"] == pytest.approx(2 / 3) and out["verified_other_photos"] == pytest.approx(2 / 6)


def test_cli_sample_and_bad_target(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["synthfaces", "sample", "--out", str(out), "--identities", "2", "--views", "3"]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (3 * 64 * 2, 2 * 64 * 2)
    assert main(["synthfaces", "train", "nothing"]) == 2
    assert "unknown target" in capsys.readouterr().err
    assert main(["synthfaces", "sample", "--out", str(out), "--source", "nowhere"]) == 2


# --- the shipped weights -----------------------------------------------------------------------------------

needs_identity = pytest.mark.skipif(not IDENTITY_WEIGHTS.is_file(), reason="identity weights not built yet")
needs_inverter = pytest.mark.skipif(not INVERTER_WEIGHTS.is_file(), reason="inverter weights not built yet")


@needs_identity
def test_shipped_identity_model_separates_held_out_people():
    assert IDENTITY_WEIGHTS.stat().st_size <= 5 * 1024 * 1024
    model = load_identity_model()
    a, b, same = verification_pairs(20, first_seed=1_200_000, seed=3)
    with torch.no_grad():
        ok = model.verify(a, b) == same
    assert ok.float().mean() >= 0.9


@needs_inverter
def test_shipped_inverter_recovers_parameters():
    from legato.synthfaces.params import identity_from_seed

    inv = load_inverter(with_generator=False)
    ident = torch.stack([identity_from_seed(1_300_000 + i) for i in range(20)])
    x = torch.cat([photos(1_300_000 + i, 1) for i in range(20)])
    with torch.no_grad():
        err = (inv.predict_params(x)[:, :21] - ident).abs().mean(0)
    # guessing 0.5 everywhere would give 0.25; head shape, skin and hair (the first 9) are the easiest
    assert err.mean() < 0.2
    assert err[:9].mean() < 0.1


@pytest.mark.slow
@needs_identity
def test_shipped_identity_model_meets_the_verification_target():
    from legato.synthfaces.train_identity import evaluate

    metrics = evaluate(load_identity_model(), n_pairs=1000)
    assert metrics["test_best_accuracy"] >= 0.98
