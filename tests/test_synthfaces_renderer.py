"""The SynthFaces renderer and photo helpers, through the public API."""

from __future__ import annotations

import pytest
import torch

from legato.errors import InputError
from legato.synthfaces import out_of_domain_photos, photos, render
from legato.synthfaces.params import (
    IDENTITY_PARAMS,
    N_IDENTITY,
    N_NUISANCE,
    identity_from_seed,
    random_camera,
    random_identity,
    random_nuisance,
)
from legato.synthfaces.world import identity_grid, out_of_domain_identity, save_grid


def _batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return random_identity(n, g), random_nuisance(n, g), random_camera(n, g)


def test_render_shape_range_and_determinism():
    idn, nui, cam = _batch(5)
    a = render(idn, nui, cam)
    b = render(idn, nui, cam)
    assert a.shape == (5, 3, 64, 64)
    assert a.dtype == torch.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert torch.equal(a, b)
    assert render(idn[:2], nui[:2], cam[:2], size=32).shape == (2, 3, 32, 32)


def test_render_batch_independent_of_chunking():
    idn, nui, cam = _batch(70, seed=3)
    whole = render(idn, nui, cam)
    single = render(idn[65:66], nui[65:66], cam[65:66])
    assert torch.allclose(whole[65:66], single, atol=1e-5)


def test_render_rejects_wrong_shapes():
    idn, nui, cam = _batch(2)
    with pytest.raises(ValueError):
        render(idn[:, :5], nui, cam)
    with pytest.raises(ValueError):
        render(idn, nui, cam[:1])


@pytest.mark.parametrize("index", range(N_IDENTITY))
def test_every_identity_parameter_changes_the_image(index):
    base = torch.full((1, N_IDENTITY), 0.5)
    nui = torch.full((1, N_NUISANCE), 0.5)
    cam = torch.zeros(1, 2)
    lo, hi = base.clone(), base.clone()
    lo[0, index], hi[0, index] = 0.05, 0.95
    diff = (render(lo, nui, cam) - render(hi, nui, cam)).abs().amax(1)
    # at least a few pixels change clearly
    assert (diff > 0.1).sum() >= 4, IDENTITY_PARAMS[index]


def test_yaw_moves_features_and_keeps_a_face():
    ident = identity_from_seed(7).expand(3, N_IDENTITY)
    nui = torch.full((3, N_NUISANCE), 0.5)
    cam = torch.tensor([[-0.5, 0.0], [0.0, 0.0], [0.5, 0.0]])
    img = render(ident, nui, cam)
    left, front, right = img
    assert (left - front).abs().mean() > 0.01
    # turning left and turning right are mirror-like, not identical
    assert (left - right).abs().mean() > 0.01
    # the centre of the image stays on the face (skin/features), not background
    bg = img[:, :, 0, 0]
    centre = img[:, :, 28:36, 28:36].mean((2, 3))
    assert ((centre - bg).abs().sum(1) > 0.05).all()


def test_out_of_domain_values_render_finite_images():
    idn, nui, cam = _batch(4, seed=1)
    idn = idn * 3.0 - 1.0  # in [-1, 2]
    img = render(idn, nui * 2.0 - 0.5, cam * 1.5)
    assert torch.isfinite(img).all() and img.shape == (4, 3, 64, 64)


def test_photos_same_person_differ_and_are_deterministic():
    a = photos(1_000_001, 4, seed=0)
    b = photos(1_000_001, 4, seed=0)
    c = photos(1_000_001, 4, seed=1)
    assert a.shape == (4, 3, 64, 64)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a[0] - a[1]).abs().mean() > 1e-3


def test_out_of_domain_photos_leave_the_unit_range():
    ident = out_of_domain_identity(1_000_002)
    assert ((ident < 0) | (ident > 1)).sum() == 5
    assert torch.equal(ident, out_of_domain_identity(1_000_002))
    x = out_of_domain_photos(1_000_002, 3)
    assert x.shape == (3, 3, 64, 64) and torch.isfinite(x).all()
    with pytest.raises(InputError):
        photos(1, 0)


def test_identity_grid_and_png(tmp_path):
    from PIL import Image

    grid = identity_grid([0, 1, 2], 4)
    assert grid.shape == (3, 4, 3, 64, 64)
    out = save_grid(grid, tmp_path / "grid.png", scale=1)
    with Image.open(out) as im:
        assert im.size == (4 * 64, 3 * 64)
