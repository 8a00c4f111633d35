"""The digits data, the flow UNet, its sampler, weights files and metrics, through the public API."""

import numpy as np
import pytest
import torch

pytest.importorskip(
    "sklearn", reason="the digits flow needs scikit-learn (pip install 'legato-unlearn[flows]')"
)

from legato.errors import CheckpointError, InputError  # noqa: E402
from legato.flows.data import load_split, to_images  # noqa: E402
from legato.flows.metrics import auc_lower_is_member, frechet_distance, is_monotone, mmd2  # noqa: E402
from legato.flows.sampling import SamplerConfig, class_labels, sample  # noqa: E402
from legato.flows.unet import FlowUNet, UNetConfig  # noqa: E402
from legato.flows.weights import (  # noqa: E402
    CLASSIFIER_WEIGHTS,
    FLOW_WEIGHTS,
    load_classifier,
    load_flow,
    save_weights,
)
from legato.ode import attach, fingerprint  # noqa: E402

TINY = UNetConfig(channels=(8, 8, 8), emb_dim=16, groups=4)


def test_split_is_stratified_fixed_and_in_range():
    a, b = load_split(), load_split()
    assert a.train_images.shape[1:] == (1, 16, 16)
    assert len(a.train_labels) + len(a.test_labels) == 1797
    assert torch.equal(a.test_labels, b.test_labels) and torch.equal(a.train_images, b.train_images)
    assert a.train_images.min() >= -1 and a.train_images.max() <= 1
    for c in range(10):  # every class is held out at about 20%
        frac = (a.test_labels == c).sum() / ((a.test_labels == c).sum() + (a.train_labels == c).sum())
        assert 0.17 < float(frac) < 0.23


def test_to_images_maps_ink_to_plus_one():
    px = np.zeros((1, 64))
    px[0, 27] = 16
    x = to_images(px, size=8)
    assert x[0, 0, 3, 3] == 1.0 and x[0, 0, 0, 0] == -1.0


def test_unet_shapes_and_mid_adapter_starts_as_identity():
    torch.manual_seed(0)
    model = FlowUNet(TINY)
    with torch.no_grad():
        for p in model.out.parameters():  # leave the zero init so the output depends on the input
            p.normal_(0, 0.1)
    x, t, y = torch.randn(3, 1, 16, 16), torch.rand(3), torch.tensor([0, 5, 10])
    before = model(x, t, y)
    assert before.shape == x.shape
    fp = fingerprint(model)
    adapters = attach(model, ["mid"], hidden=4, field="unet")
    assert torch.allclose(model(x, t, y), before)
    with torch.no_grad():
        for p in adapters.parameters():
            p.normal_(0, 0.5)
    assert not torch.allclose(model(x, t, y), before)
    assert fingerprint(model) == fp
    adapters.detach()
    assert torch.allclose(model(x, t, y), before)


def test_sampling_is_seeded_and_solver_checked():
    model = FlowUNet(TINY)
    with torch.no_grad():
        model.out.weight.normal_(0, 0.1)
    labels = class_labels(2, [1, 7])
    cfg = SamplerConfig(steps=2)
    a, b = sample(model, labels, seed=3, config=cfg), sample(model, labels, seed=3, config=cfg)
    c = sample(model, labels, seed=4, config=cfg)
    assert a.shape == (4, 1, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.std() > 0.05  # not a constant image (the range is clamped by sample itself)
    with pytest.raises(InputError):
        sample(model, labels, config=SamplerConfig(method="leapfrog"))


def test_weights_round_trip_and_refusals(tmp_path):
    model = FlowUNet(TINY)
    path = save_weights(model, tmp_path / "f.safetensors", "digits-flow-unet", TINY.to_dict())
    loaded = load_flow(path)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    with pytest.raises(CheckpointError, match="expected 'digits-classifier'"):
        load_classifier(path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_flow(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="does not exist"):
        load_flow(tmp_path / "missing.safetensors")


def test_feature_distances_separate_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    shifted = rng.normal(size=(300, 4)) + 1.5
    assert frechet_distance(a, b) < 0.3 < frechet_distance(a, shifted)
    assert abs(mmd2(a, b)) < 0.02 < mmd2(shifted, b)
    assert auc_lower_is_member(torch.zeros(5), torch.ones(5)) == 1.0
    assert auc_lower_is_member(torch.ones(5), torch.ones(5)) == 0.5
    assert is_monotone([0.9, 0.5, 0.5, 0.0]) and not is_monotone([0.9, 0.4, 0.6])


@pytest.mark.skipif(
    not FLOW_WEIGHTS.is_file() or not CLASSIFIER_WEIGHTS.is_file(), reason="no shipped weights"
)
def test_shipped_classifier_reaches_95_percent_on_held_out_digits():
    data = load_split()
    clf = load_classifier()
    acc = (clf.predict(data.test_images) == data.test_labels).float().mean()
    assert acc >= 0.95
    model = load_flow()
    assert 3e5 < model.num_parameters() < 2e6
