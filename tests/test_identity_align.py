"""Similarity-transform alignment: the fitted transform, where points land, and gradients."""

import numpy as np
import pytest
import torch

from legato.identity import align_ffhq, align_points, similarity_transform
from legato.identity.align import ARCFACE_TEMPLATE_112, FFHQ_POINTS, ffhq_to_template, warp


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rot.T + shift
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], scale * rot, atol=1e-9) and np.allclose(m[:, 2], shift, atol=1e-9)


def test_similarity_transform_never_reflects():
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m = similarity_transform(src, src * np.array([-1.0, 1.0]))  # a mirror image cannot be fitted exactly
    assert np.linalg.det(m[:, :2]) >= 0


def _dot_image(size, x, y):
    """A bright pixel at the pixel holding (x, y), and that pixel's centre (continuous coordinates)."""
    img = -torch.ones(1, 3, size, size)
    img[..., int(y), int(x)] = 1.0
    return img, np.array([int(x) + 0.5, int(y) + 0.5, 1.0])


def _bright_spot(crop):
    c = crop[0].mean(0)
    iy, ix = np.unravel_index(int(c.argmax()), c.shape)
    return ix + 0.5, iy + 0.5


@pytest.mark.parametrize("k", [0, 2, 4])
def test_ffhq_landmarks_land_on_the_template(k):
    size = 224  # a blurred dot survives resampling; the antialiasing path is used below 0.5 scale
    img, centre = _dot_image(size, *(FFHQ_POINTS[k] * size))
    crop = align_ffhq(img)
    ex, ey = ffhq_to_template(size) @ centre  # a least-squares fit of 5 points: within 2 px of each
    assert np.allclose([ex, ey], ARCFACE_TEMPLATE_112[k], atol=2.0)
    sx, sy = _bright_spot(crop)
    assert abs(sx - ex) <= 1.0 and abs(sy - ey) <= 1.0


def test_per_image_points_align_each_image_separately():
    size = 160
    pts = np.stack([FFHQ_POINTS * size, FFHQ_POINTS * size * 0.8 + 10])
    dots = [_dot_image(size, *pts[i][1]) for i in range(2)]
    crops = align_points(torch.cat([d[0] for d in dots]), pts)
    for i in range(2):
        ex, ey = similarity_transform(pts[i], ARCFACE_TEMPLATE_112) @ dots[i][1]
        sx, sy = _bright_spot(crops[i : i + 1])
        assert abs(sx - ex) <= 1.0 and abs(sy - ey) <= 1.0


def test_identity_warp_returns_the_image():
    img = torch.rand(2, 3, 16, 16)
    out = warp(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 16)
    assert torch.allclose(out, img, atol=1e-5)


def test_alignment_is_differentiable_and_fixed_for_a_size():
    img = torch.rand(1, 3, 256, 256, requires_grad=True)
    align_ffhq(img).sum().backward()
    assert img.grad.abs().sum() > 0
    # the fixed transform takes the FFHQ frame's five points (at this size) onto the template's
    from legato.identity.align import ARCFACE_TEMPLATE_112, FFHQ_POINTS

    m = ffhq_to_template(256)
    mapped = FFHQ_POINTS * 256 @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE_112).max() < 3.0  # a similarity fit of five points, pixels
    assert np.allclose(ffhq_to_template(512)[:, :2] * 2, ffhq_to_template(256)[:, :2])  # twice the size: half the scale
    with pytest.raises(ValueError, match="square"):
        align_ffhq(torch.rand(1, 3, 64, 32))
