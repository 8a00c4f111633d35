"""Named adapter sets, and the safetensors + JSON bundle round trip."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from legato.errors import CheckpointError, InputError
from legato.ode import adapter_sets, attach, fingerprint, load_bundle, save_bundle, set_adapters


def toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))


def trained(adapters, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in adapters:
            for p in a.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return adapters


def test_round_trip_reproduces_outputs_exactly(tmp_path):
    model = toy_model()
    x = torch.randn(2, 3, 8, 8)
    adapters = trained(attach(model, ["0"], hidden=16, step_size=0.2, method="rk4"), 1)
    adapters.strength = 0.7
    out = model(x)
    save_bundle(adapters, tmp_path / "bundle", metadata={"method": "legato"})
    config = json.loads((tmp_path / "bundle" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LEGATO" and config["method"] == "rk4" and config["step_size"] == 0.2
    assert config["base_model_fingerprint"] == fingerprint(model)
    assert config["metadata"]["method"] == "legato"
    adapters.detach()
    fresh = toy_model()
    loaded = load_bundle(tmp_path / "bundle", fresh)
    assert loaded.strength == 0.7
    assert torch.equal(fresh(x), out)


def test_attaching_does_not_change_fingerprint():
    model = toy_model()
    before = fingerprint(model)
    attach(model, ["0"], hidden=8)
    assert fingerprint(model) == before


def test_tampered_fingerprint_is_refused(tmp_path):
    model = toy_model()
    save_bundle(trained(attach(model, ["0"], hidden=8), 1), tmp_path / "b")
    other = toy_model()
    with torch.no_grad():
        other[0].weight.add_(1e-3)
    with pytest.raises(CheckpointError, match="other base weights"):
        load_bundle(tmp_path / "b", other)
    cfg = tmp_path / "b" / "adapter_config.json"
    data = json.loads(cfg.read_text())
    data["base_model_fingerprint"] = "sha256:" + "0" * 64
    cfg.write_text(json.dumps(data))
    with pytest.raises(CheckpointError):
        load_bundle(tmp_path / "b", toy_model())


def test_wrong_shape_is_refused_and_leaves_model_clean(tmp_path):
    model = toy_model()
    save_bundle(trained(attach(model, ["0"], hidden=8), 1), tmp_path / "b")
    path = tmp_path / "b" / "adapter_model.safetensors"
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.endswith("inp.weight"))
    tensors[key] = torch.zeros(9, 8, 1, 1)
    save_file(tensors, str(path))
    fresh = toy_model()
    with pytest.raises(CheckpointError, match="shape"):
        load_bundle(tmp_path / "b", fresh)
    assert not adapter_sets(fresh)


def test_unknown_site_and_not_a_bundle_are_refused(tmp_path):
    model = toy_model()
    save_bundle(trained(attach(model, ["2"], hidden=8), 1), tmp_path / "b")
    smaller = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    with pytest.raises(CheckpointError):
        load_bundle(tmp_path / "b", smaller, verify_fingerprint=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an adapter bundle"):
        load_bundle(tmp_path / "empty", toy_model())
    with pytest.raises(InputError, match="does not exist"):
        load_bundle(tmp_path / "missing", toy_model())
    (tmp_path / "b" / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_bundle(tmp_path / "b", toy_model())


def test_named_sets_stack_and_switch():
    model = toy_model()
    x = torch.randn(1, 3, 8, 8)
    base = model(x)
    alice = trained(attach(model, ["0"], name="alice", hidden=8), 1)
    bob = trained(attach(model, ["2"], name="bob", hidden=8), 2)
    assert list(adapter_sets(model)) == ["alice", "bob"]
    both = model(x)
    set_adapters(model, ["alice"], [1.0])
    only_alice = model(x)
    set_adapters(model, ["bob"], [1.0])
    only_bob = model(x)
    assert not torch.equal(only_alice, only_bob) and not torch.equal(both, only_alice)
    set_adapters(model, ["alice", "bob"], [0.0, 0.0])
    assert torch.equal(model(x), base)
    with pytest.raises(InputError):
        set_adapters(model, ["carol"])
    with pytest.raises(InputError):
        attach(model, ["0"], name="alice")
    alice.detach()
    bob.detach()
    assert torch.equal(model(x), base)
    assert all(p.requires_grad for p in model.parameters())
