"""The keyed field: a gate that opens by the latent's distance to the forgotten latents it remembers."""

import pytest
import torch

from legato.errors import InputError
from legato.generators import load
from legato.ode import attach, load_bundle, save_bundle
from legato.ode.fields import KeyedField


def _keyed_toy(**settings):
    """The toy generator, a keyed set on it, and two forgotten latents keyed at one view."""
    gen = load("toy")
    adapters = attach(gen, gen.adapter_sites(), field="keyed", hidden=8, **settings)
    forgotten = gen.mapping(torch.randn(2, gen.z_dim, generator=torch.Generator().manual_seed(1)))
    adapters.set_gate_keys(adapters.site_conditions(lambda: gen.synthesis(forgotten, gen.views(1).expand(2, -1))))
    return gen, adapters, forgotten


def _opens_at_the_keys_and_reloads(gen, adapters, forgotten, tmp_path):
    """Check the set's first gate is fully open at the forgotten latents and that a saved and reloaded copy
    opens as much for strangers; returns (field, reloaded field). Detaches `adapters`."""
    site = adapters.sites[0]
    field = adapters.adapter(site).field
    assert torch.allclose(field.openness(forgotten[:, 0]), torch.ones(2))
    save_bundle(adapters, tmp_path / "b")
    adapters.detach()
    loaded = load_bundle(tmp_path / "b", load("toy")).adapter(site).field
    strangers = gen.mapping(torch.randn(16, gen.z_dim, generator=torch.Generator().manual_seed(2)))[:, 0]
    assert torch.allclose(loaded.openness(strangers), field.openness(strangers))
    return field, loaded


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


def test_the_identity_space_ignores_what_the_map_leaves_out():
    field = KeyedField(4, hidden=8, condition_dim=6, space="identity", rank=2)
    w = torch.randn(2, 6, generator=torch.Generator().manual_seed(0))
    field.set_keys(w[:1])
    assert torch.equal(field.openness(w), torch.zeros(2))  # no map yet: shut
    projection = torch.zeros(6, 2)
    projection[0, 0] = projection[1, 1] = 1.0  # only the first two coordinates count
    field.set_projection(projection)
    nuisance = w[:1].clone()
    nuisance[0, 2:] += 5.0
    identity = w[:1].clone()
    identity[0, 0] += 1.0
    gate = field.openness(torch.cat([w[:1], nuisance, identity]))
    assert torch.allclose(gate[:2], torch.ones(2))
    # one coordinate of two moved by 1: squared distance per coordinate 0.5, r² = 0.5
    assert gate[2].item() == pytest.approx(float(torch.exp(torch.tensor(-1.0))), rel=1e-5)
    with pytest.raises(InputError, match="identity"):
        KeyedField(4, hidden=8, condition_dim=6).set_projection(projection)
    with pytest.raises(InputError, match="gate space"):
        KeyedField(4, hidden=8, condition_dim=6, space="pixels")


class _NuisanceWorld(torch.nn.Module):
    """A latent of 6 coordinates whose embedding (the 'identity') reads only the first two."""

    z_dim = w_dim = 6

    def mapping(self, z):
        return z.unsqueeze(1).expand(-1, 2, -1)

    def synthesis(self, ws, c):
        return ws[:, 0, :2]

    def embed(self, images):
        return torch.stack([images[:, 0], images[:, 1], torch.ones_like(images[:, 0])], 1)


def test_identity_projection_follows_the_identity_model():
    from legato.unlearning.gate_space import identity_projection

    world = _NuisanceWorld()
    projection = identity_projection(world, world, torch.zeros(6), torch.ones(6), torch.zeros(1, 2), n=512,
                                      rank=4, batch=128)
    assert projection.shape == (6, 3)  # no more directions than the embedding has
    along = projection.norm(dim=1)
    assert along[2:].max() < 0.1 * along[:2].min()  # the nuisance coordinates hardly move the gate (a fit)
    x = torch.randn(256, 6, generator=torch.Generator().manual_seed(3))
    d = x[:128] - x[128:]
    ratio = ((d @ projection).pow(2).sum(1).mean() / 3) / (d.pow(2).sum(1).mean() / 6)
    assert ratio.item() == pytest.approx(1.0, rel=0.3)  # a random pair as far apart per coordinate as in ŵ
    with pytest.raises(InputError, match="identity model"):
        identity_projection(world, None, torch.zeros(6), torch.ones(6), torch.zeros(1, 2))


def test_identity_space_set_fits_its_map_and_reloads(tmp_path):
    gen, adapters, forgotten = _keyed_toy(gate_space="identity")
    site = adapters.sites[0]
    assert torch.equal(adapters.adapter(site).field.openness(forgotten[:, 0]), torch.zeros(2))  # no map yet
    from legato.unlearning.gate_space import identity_projection

    center, scale = adapters.gate_standardisation()
    adapters.set_gate_projection(identity_projection(gen, gen.identity_model(), center, scale, gen.views(1),
                                                     n=256, rank=8))
    assert adapters.config.gate_rank == 8
    field, loaded = _opens_at_the_keys_and_reloads(gen, adapters, forgotten, tmp_path)
    assert loaded.space == "identity" and torch.equal(loaded.projection, field.projection)


def test_the_identity_space_is_a_setting_of_the_keyed_field():
    from legato.unlearning.config import UnlearnConfig

    with pytest.raises(InputError, match="--field keyed"):
        UnlearnConfig(field="gated", gate_space="identity").validate()
    with pytest.raises(InputError, match="--field keyed"):
        UnlearnConfig(field="conv1x1", gate_floor=0.05).validate()
    with pytest.raises(InputError, match="gate-floor"):
        UnlearnConfig(field="keyed", gate_floor=-0.1).validate()
    with pytest.raises(InputError, match="gate-space"):
        UnlearnConfig(field="keyed", gate_space="pixels").validate()
    UnlearnConfig(field="keyed", gate_space="identity").validate()


def test_a_floor_makes_the_gate_compact():
    plain = KeyedField(4, hidden=8, condition_dim=6)
    floored = KeyedField(4, hidden=8, condition_dim=6, floor=0.1)
    w = torch.randn(1, 6, generator=torch.Generator().manual_seed(0))
    for f in (plain, floored):
        f.set_keys(w)
    probes = torch.cat([w, w + 0.3, w + 1.0, w + 3.0])
    g, h = plain.openness(probes), floored.openness(probes)
    assert h[0].item() == pytest.approx(1.0)  # still fully open at the key
    assert torch.allclose(h, ((g - 0.1) / 0.9).clamp_min(0.0))
    assert g[3] > 0 and h[3] == 0  # far away: a little open without the floor, shut with it
    with pytest.raises(InputError, match="floor"):
        KeyedField(4, hidden=8, condition_dim=6, floor=1.0)


def test_the_floor_travels_with_the_bundle(tmp_path):
    gen, adapters, forgotten = _keyed_toy(gate_floor=0.2)
    save_bundle(adapters, tmp_path / "b")
    adapters.detach()
    loaded = load_bundle(tmp_path / "b", load("toy"))
    assert loaded.config.gate_floor == 0.2 and loaded.adapter(loaded.sites[0]).field.floor == 0.2


class _CurvedWorld(_NuisanceWorld):
    """The identity bends with the first coordinate (a circle: no linear map of the latent predicts it) and
    reads the second; the other four coordinates are nuisance."""

    def embed(self, images):
        a, b = images[:, 0], images[:, 1]
        return torch.stack([torch.cos(2 * a), torch.sin(2 * a), torch.tanh(b)], 1)


def test_the_embedding_map_predicts_a_curved_identity_and_ignores_the_nuisance():
    from legato.unlearning.gate_space import embedding_map

    world = _CurvedWorld()
    tensors = embedding_map(world, world, torch.zeros(6), torch.ones(6), torch.zeros(1, 2), n=1024, hidden=32,
                            steps=1500, batch=256)
    field = KeyedField(4, hidden=8, condition_dim=6, space="embedding")
    field.set_embedding_map(tensors)
    x = torch.randn(512, 6, generator=torch.Generator().manual_seed(7))  # latents the fit never saw
    truth = torch.nn.functional.normalize(world.embed(x[:, :2]), dim=1)
    predicted = field.predicted_embedding(x)
    assert torch.nn.functional.cosine_similarity(predicted, truth).mean() > 0.9
    # the best linear prediction of the same renders stays far below (the circle is not linear)
    xc = torch.cat([x, torch.ones(512, 1)], 1)
    linear = torch.nn.functional.normalize(xc @ torch.linalg.lstsq(xc, truth).solution, dim=1)
    assert torch.nn.functional.cosine_similarity(linear, truth).mean() < 0.8
    nuisance = x.clone()
    nuisance[:, 2:] = torch.randn(512, 4, generator=torch.Generator().manual_seed(8))
    moved = torch.nn.functional.cosine_similarity(field.predicted_embedding(nuisance), predicted)
    assert moved.mean() > 0.9  # the same person in another light is still predicted as the same person
    again = embedding_map(world, world, torch.zeros(6), torch.ones(6), torch.zeros(1, 2), n=1024, hidden=32,
                          steps=1500, batch=256)
    assert all(torch.equal(again[k], tensors[k]) for k in tensors)  # seeded: a resumed run fits the same map
    with pytest.raises(InputError, match="identity model"):
        embedding_map(world, None, torch.zeros(6), torch.ones(6), torch.zeros(1, 2))


def test_the_embedding_gate_measures_between_unit_predictions():
    field = KeyedField(4, hidden=8, condition_dim=6, space="embedding")
    w = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    field.set_keys(w[:1])
    assert field.awaits_map and torch.equal(field.openness(w), torch.zeros(3))  # no map yet: shut
    g = torch.Generator().manual_seed(1)
    tensors = {"map_in": torch.randn(6, 5, generator=g), "map_in_bias": torch.zeros(5),
               "map_mid": torch.randn(5, 5, generator=g), "map_mid_bias": torch.zeros(5),
               "map_out": torch.randn(5, 3, generator=g), "map_out_bias": torch.zeros(3)}
    field.set_embedding_map(tensors)
    assert not field.awaits_map
    gate = field.openness(w)
    assert gate[0].item() == pytest.approx(1.0)
    u = field.predicted_embedding(w)
    assert torch.allclose(u.norm(dim=1), torch.ones(3))
    # unit vectors: ‖u − k‖² = 2(1 − cos), not divided by the width; r² = 0.5 at the start
    expected = torch.exp(-2 * (1 - u[1:] @ u[0]) / 0.5)
    assert torch.allclose(gate[1:], expected, atol=1e-5)
    with pytest.raises(InputError, match="chain"):
        field.set_embedding_map({**tensors, "map_in": torch.zeros(7, 5)})
    with pytest.raises(InputError, match="lacks"):
        field.set_embedding_map({k: v for k, v in tensors.items() if k != "map_out"})
    with pytest.raises(InputError, match="embedding"):
        KeyedField(4, hidden=8, condition_dim=6, space="identity").set_embedding_map(tensors)


def test_an_embedding_space_set_fits_its_map_and_reloads(tmp_path):
    from legato.unlearning.gate_space import embedding_map

    gen, adapters, forgotten = _keyed_toy(gate_space="embedding")
    center, scale = adapters.gate_standardisation()
    adapters.set_gate_embedding_map(embedding_map(gen, gen.identity_model(), center, scale, gen.views(1), n=256,
                                                  hidden=16, steps=50))
    assert adapters.config.gate_map_hidden == 16 and adapters.config.gate_rank > 0
    field, loaded = _opens_at_the_keys_and_reloads(gen, adapters, forgotten, tmp_path)
    assert loaded.space == "embedding" and torch.equal(loaded.map_mid, field.map_mid)
    with pytest.raises(InputError, match="embedding"):
        attach(load("toy"), gen.adapter_sites(), field="keyed", hidden=8).set_gate_embedding_map(field_tensors(field))


def field_tensors(field):
    from legato.ode.fields import EMBEDDING_MAP

    return {name: getattr(field, name) for name in EMBEDDING_MAP}


def test_a_fitted_gate_map_is_kept_for_the_next_run_and_equals_a_fresh_fit(tmp_path, monkeypatch):
    from legato.unlearning import gate_space

    monkeypatch.setenv("LEGATO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LEGATO_NO_CACHE", raising=False)
    gen = _keyed_toy(gate_space="embedding")[0]
    args = (gen, gen.identity_model(), torch.zeros(gen.w_dim), torch.ones(gen.w_dim), gen.views(1))
    fits = []
    real = gate_space._fit_embedding_map
    monkeypatch.setattr(gate_space, "_fit_embedding_map", lambda *a: fits.append(1) or real(*a))
    first = gate_space.embedding_map(*args, n=128, hidden=8, steps=20)
    again = gate_space.embedding_map(*args, n=128, hidden=8, steps=20)
    assert len(fits) == 1 and len(list((tmp_path / "cache" / "gate-maps").iterdir())) == 1
    assert all(torch.equal(first[k], again[k]) for k in first)
    monkeypatch.setenv("LEGATO_NO_CACHE", "1")  # a fresh fit gives the kept one, bit for bit
    fresh = gate_space.embedding_map(*args, n=128, hidden=8, steps=20)
    assert len(fits) == 2 and all(torch.equal(first[k], fresh[k]) for k in first)
    monkeypatch.delenv("LEGATO_NO_CACHE")
    gate_space.embedding_map(*args, n=128, hidden=8, steps=21)  # another setting: another entry
    assert len(fits) == 3
    with torch.no_grad():  # other weights: another entry
        next(gen.parameters()).add_(1.0)
    gate_space.embedding_map(*args, n=128, hidden=8, steps=20)
    assert len(fits) == 4
