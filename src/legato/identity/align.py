"""Similarity-transform face alignment, differentiable through `grid_sample`.

Coordinates are continuous pixel coordinates: the top-left corner of the image is (0, 0) and pixel
(i, j) covers [j, j+1) × [i, i+1), so a landmark given at a pixel index `p` (dlib, OpenCV) is `p + 0.5`
here. In these coordinates a resize only scales points, which keeps the maths exact when the input is
first downsampled with antialiasing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# The five-point ArcFace template for 112×112 crops (insightface's `arcface_src`, given at pixel
# indices): left eye, right eye, nose tip, left and right mouth corner, as they appear in the image.
ARCFACE_TEMPLATE_112 = (
    np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
    )
    + 0.5
)

# The same five points in an FFHQ-framed image, as fractions of its side. From the FFHQ alignment
# recipe (eye centres a quarter of the side apart, centred, 0.475 down; mouth centre one eye distance
# below them) with the nose and mouth width of an average face; dlib's 68-point landmarks on
# shared/data/faces/ffhq/00072.png land within 0.015 of these.
FFHQ_POINTS = np.array([[0.375, 0.475], [0.625, 0.475], [0.5, 0.61], [0.395, 0.725], [0.605, 0.725]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift; no reflection) taking `src` to `dst`.

    `src`, `dst`: `[K, 2]` points. Returns a `[2, 3]` matrix `M` with `dst ≈ M[:, :2] @ src + M[:, 2]`
    (Umeyama's closed form).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    var_s = (s_c**2).sum() / len(src)
    scale = (sig * np.diag(sign)).sum() / var_s
    shift = mu_d - scale * rot @ mu_s
    return np.concatenate([scale * rot, shift[:, None]], axis=1)


def warp(
    images: torch.Tensor,
    matrix: np.ndarray | torch.Tensor,
    size: int,
    *,
    antialias: bool = True,
    padding_mode: str = "border",
) -> torch.Tensor:
    """Resample `images` `[N, C, H, W]` into `size`×`size` crops through a similarity transform.

    `matrix` (`[2, 3]` or `[N, 2, 3]`) takes input coordinates to crop coordinates (both continuous
    pixels). When the crop is much smaller than the face in the input, the input is first downsampled
    with antialiasing, so the result is smooth and the gradient reaches every input pixel;
    `antialias=False` samples the input itself, point by point (OpenCV's `warpAffine` with bilinear
    interpolation; with `padding_mode="zeros"` also its black outside the image).
    Differentiable with respect to `images`.
    """
    n, _, h, w = images.shape
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if m.dim() == 2:
        m = m.expand(n, 2, 3)
    scale = float(torch.linalg.det(m[:, :, :2]).abs().sqrt().min())
    if antialias and scale < 0.5:  # more than 2 input pixels per crop pixel: antialias first
        factor = min(1.0, 2.0 * scale)
        new_h, new_w = max(1, round(h * factor)), max(1, round(w * factor))
        images = F.interpolate(
            images, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
    # theta takes crop-normalised coordinates ([-1, 1], align_corners=False) to input-normalised ones.
    full = torch.zeros(n, 3, 3, dtype=torch.float64)
    full[:, :2] = m
    full[:, 2, 2] = 1.0
    inv = torch.linalg.inv(full)
    crop_from_norm = torch.tensor(
        [[size / 2, 0, size / 2], [0, size / 2, size / 2], [0, 0, 1]], dtype=torch.float64
    )
    norm_from_input = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]], dtype=torch.float64)
    theta = (norm_from_input @ inv @ crop_from_norm)[:, :2].to(images.dtype).to(images.device)
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def ffhq_to_template(image_size: int, template: np.ndarray = ARCFACE_TEMPLATE_112) -> np.ndarray:
    """The fixed `[2, 3]` transform from an FFHQ-framed `image_size`² image to a template's crop."""
    return similarity_transform(FFHQ_POINTS * image_size, template)


def align_ffhq(
    images: torch.Tensor, size: int = 112, template: np.ndarray = ARCFACE_TEMPLATE_112
) -> torch.Tensor:
    """Differentiable alignment of FFHQ-framed faces (a generator's output) to a template crop.

    `images`: `[N, 3, S, S]` in [-1, 1]. Returns `[N, 3, size, size]`; `template` is given for a crop of
    side `size`.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square images, got {tuple(images.shape[-2:])}")
    return warp(images, ffhq_to_template(images.shape[-1], template), size)


def align_points(
    images: torch.Tensor, points: np.ndarray, size: int = 112, template: np.ndarray = ARCFACE_TEMPLATE_112
) -> torch.Tensor:
    """Align each image by its own five points `[N, 5, 2]` (continuous pixels) to the template crop."""
    mats = np.stack([similarity_transform(p, template) for p in np.asarray(points)])
    return warp(images, mats, size)
