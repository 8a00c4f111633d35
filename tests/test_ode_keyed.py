"""The keyed field: a gate that opens by the latent's distance to the forgotten latents it remembers."""

import pytest
import torch

from legato.errors import InputError
from legato.generators import load
from legato.ode import attach, load_bundle, save_bundle
from legato.ode.fields import KeyedField


def test_the_gate_is_one_at_a_key_and_falls_with_distance():
    field = KeyedField(4, hidden=8, condition_dim=6)
    w = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(field.openness(w), torch.zeros(3))  # no key yet: shut (the adapter is the identity)
    field.set_keys(w[:2])
    gate = field.openness(torch.cat([w, w[:1] + 0.5, w[:1] + 3.0]))
    assert torch.allclose(gate[:2], torch.ones(2))
    assert gate[3] < 1.0 and gate[4] < gate[3]  # further from the nearest key, more shut
    # r² = 0.5 at the start: the nearest key's squared distance per coordinate u gives exp(−u / 0.5)
    far = w[0] + 3.0
    u = min(((far - k) ** 2).mean().item() for k in w[:2])
    assert gate[4].item() == pytest.approx(torch.exp(torch.tensor(-u / 0.5)).item(), rel=1e-4)


def test_keys_are_read_from_the_sites_and_reload_with_the_bundle(tmp_path):
    gen = load("toy")
    adapters = attach(gen, gen.adapter_sites(), field="keyed", hidden=8)
    forgotten = gen.mapping(torch.randn(3, gen.z_dim, generator=torch.Generator().manual_seed(1)))
    cam = gen.views(1).expand(3, -1)
    conditions = adapters.site_conditions(lambda: gen.synthesis(forgotten, cam))
    assert set(conditions) == set(adapters.sites) and all(c.shape[0] == 3 for c in conditions.values())
    adapters.set_gate_keys(conditions)
    assert adapters.config.gate_keys == 3
    strangers = gen.mapping(torch.randn(64, gen.z_dim, generator=torch.Generator().manual_seed(2)))
    site = adapters.sites[0]
    field = adapters.adapter(site).field
    own = field.openness(conditions[site])
    others = field.openness(strangers[:, 0])
    assert torch.allclose(own, torch.ones(3)) and others.mean() < 0.3
    with torch.no_grad():
        field.log_radius2.fill_(-1.0)
    save_bundle(adapters, tmp_path / "b")
    adapters.detach()
    fresh = load("toy")
    loaded = load_bundle(tmp_path / "b", fresh)
    again = loaded.adapter(site).field
    assert again.keys.shape == field.keys.shape and torch.equal(again.keys, field.keys)
    assert again.log_radius2.item() == -1.0


def test_set_gate_keys_refuses_other_fields_and_missing_sites():
    gen = load("toy")
    plain = attach(gen, gen.adapter_sites(), hidden=8)
    with pytest.raises(InputError, match="keyed"):
        plain.set_gate_keys({})
    plain.detach()
    keyed = attach(gen, gen.adapter_sites(), field="keyed", hidden=8)
    with pytest.raises(InputError, match="no latents"):
        keyed.set_gate_keys({})
