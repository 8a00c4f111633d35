"""The gated field: a per-sample switch read from the latent at the site (for forgetting many people)."""

import json

import pytest
import torch
from torch import nn

from legato.errors import InputError
from legato.ode import attach, load_bundle, save_bundle


class Styled(nn.Module):
    """A layer called as layer(x, w), like the generators' modulated convs."""

    def __init__(self, channels: int = 4, w_dim: int = 6) -> None:
        super().__init__()
        self.out_channels = channels
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.affine = nn.Linear(w_dim, channels)

    def forward(self, x, w):
        return self.conv(x * (1 + self.affine(w))[:, :, None, None])


class TinyGenerator(nn.Module):
    w_dim = z_dim = 6

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = Styled(4, self.w_dim)
        self.plain = nn.Conv2d(4, 4, 1)

    def mapping(self, z):
        return z * 0.5 + 1.0

    def forward(self, x, w):
        return self.plain(self.layer(x, w))


def train_like(adapters, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in adapters:
            for p in adapter.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def gate_bias(adapters, value: float):
    with torch.no_grad():
        for adapter in adapters:
            adapter.field.gate[2].weight.zero_()
            adapter.field.gate[2].bias.fill_(value)


def test_new_gated_adapter_is_the_identity_and_reads_w_dim():
    model = TinyGenerator()
    x, w = torch.randn(3, 4, 5, 5), torch.randn(3, 6)
    before = model(x, w)
    adapters = attach(model, ["layer"], field="gated", hidden=8)
    assert adapters.config.condition_dim == 6
    field = adapters.adapter("layer").field  # the gate's input standardised by the mapping's statistics
    assert torch.allclose(field.center, torch.ones(6), atol=0.1)
    assert torch.allclose(field.scale, torch.full((6,), 0.5), atol=0.05)
    assert torch.equal(model(x, w), before)


def test_the_gate_switches_each_sample_by_its_latent():
    model = TinyGenerator()
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 6)
    base = model(x, w)
    adapters = attach(model, ["layer"], field="gated", hidden=8)
    train_like(adapters)
    gate_bias(adapters, -60.0)  # shut: the base output, whatever the field
    assert torch.allclose(model(x, w), base, atol=1e-6)
    gate_bias(adapters, 60.0)  # open
    assert not torch.allclose(model(x, w), base, atol=1e-3)
    # a gate that opens for one latent only changes that sample alone
    field = adapters.adapter("layer").field
    margin = float(w[0] @ w[0] - w[0] @ w[1]) / 2  # hidden unit 0: +margin·k at w[0], −margin·k at w[1]
    k = 100.0 / margin
    with torch.no_grad():
        field.gate[0].weight.zero_()
        field.gate[0].bias.zero_()
        field.center.zero_()
        field.scale.fill_(1.0)
        field.gate[0].weight[0] = w[0] * k
        field.gate[0].bias[0] = -k * float(w[0] @ w[0] + w[0] @ w[1]) / 2
        field.gate[2].weight.zero_()
        field.gate[2].weight[0, 0] = 1.0
        field.gate[2].bias.zero_()
    openness = field.openness(w)
    assert openness[0] > 0.99 and openness[1] < 0.01, openness
    out = model(x, w)
    assert not torch.allclose(out[0], base[0], atol=1e-3)
    assert torch.allclose(out[1], base[1], atol=1e-3)


def test_gated_bundle_round_trips(tmp_path):
    model = TinyGenerator()
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 6)
    adapters = attach(model, ["layer"], field="gated", hidden=8, gate_hidden=12, step_size=0.8)
    assert adapters.adapter("layer").field.gate[0].out_features == 12  # the gate's own width
    train_like(adapters)
    out = model(x, w)
    save_bundle(adapters, tmp_path / "b")
    config = json.loads((tmp_path / "b" / "adapter_config.json").read_text())
    assert config["field"] == "gated" and config["condition_dim"] == 6 and config["gate_hidden"] == 12
    adapters.detach()
    fresh = TinyGenerator()
    load_bundle(tmp_path / "b", fresh)
    assert torch.equal(fresh(x, w), out)


def test_a_site_without_a_latent_is_refused_in_one_line():
    model = TinyGenerator()
    attach(model, ["plain"], field="gated", hidden=8)
    with pytest.raises(InputError, match="needs a condition of shape"):
        model(torch.randn(2, 4, 5, 5), torch.randn(2, 6))
    with pytest.raises(InputError, match="no w_dim"):
        attach(nn.Sequential(nn.Conv2d(3, 3, 1)), ["0"], field="gated")


def test_the_membership_term_teaches_the_gate_who_is_forgotten():
    """Trained on the membership term alone, the gate opens for the forgotten latents and shuts for others,
    whose conditions it keeps in a buffer between steps."""
    from legato.unlearning.methods.base import Trainable
    from legato.unlearning.methods.gates import GateMembership

    model = TinyGenerator()
    adapters = attach(model, ["layer"], field="gated", hidden=16)
    trainable = Trainable("legato", model, list(adapters.parameters()), adapter_set=adapters,
                          membership=GateMembership(adapters))
    opt = torch.optim.Adam(adapters.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    forgotten = model.mapping(torch.randn(3, 6, generator=g))
    x = torch.randn(5, 4, 5, 5, generator=g)
    targets = torch.tensor([True, True, True, False, False])
    for _ in range(200):
        w = torch.cat([forgotten, model.mapping(torch.randn(2, 6, generator=g))])
        model(x, w)
        loss = trainable.membership_loss(targets, ~targets, torch.zeros(()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert trainable.membership.bank["layer"].shape == (400, 6)  # every step's two others kept
    field = adapters.adapter("layer").field
    with torch.no_grad():
        assert field.openness(forgotten).min() > 0.8
        assert field.openness(model.mapping(torch.randn(500, 6, generator=g))).mean() < 0.3
    # records are consumed: without a gated field's forward, the term is zero
    assert trainable.membership_loss(targets, ~targets, torch.zeros(())).item() == 0.0
