"""EG3D cameras, rays and the volume renderer (no network weights needed)."""

import math

import pytest
import torch

from legato.generators.eg3d.cameras import CameraRig, camera_vector, fov_to_intrinsics, look_at_pose, split_camera
from legato.generators.eg3d.rays import ray_box_limits, sample_rays
from legato.generators.eg3d.renderer import (
    ImportanceRenderer,
    RenderingOptions,
    march,
    sample_pdf,
    sample_triplanes,
)


def test_front_camera_sits_on_the_z_axis_and_looks_at_the_pivot():
    pose = look_at_pose(math.pi / 2, math.pi / 2, pivot=(0.0, 0.0, 0.0), radius=2.7)
    assert torch.allclose(pose[0, :3, 3], torch.tensor([0.0, 0.0, 2.7]), atol=1e-5)
    assert torch.allclose(pose[0, :3, 2], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)  # forward (OpenCV z)
    rot = pose[0, :3, :3]
    assert torch.allclose(rot @ rot.T, torch.eye(3), atol=1e-5)


def test_views_are_symmetric_yaws_at_the_given_pitch_around_the_pivot():
    rig = CameraRig()
    c = rig.views(11)
    assert c.shape == (11, 25)
    cam2world, intrinsics = split_camera(c)
    origins = cam2world[:, :3, 3]
    # cameras sit on a sphere around the world origin and look at the pivot (the reference's sampler)
    assert torch.allclose(origins.norm(dim=1), torch.full((11,), rig.radius), atol=1e-4)
    assert torch.allclose(origins[:, 0], -origins.flip(0)[:, 0], atol=1e-5)
    assert abs(origins[5, 0].item()) < 1e-5
    # pitch −0.2: the polar angle is arccos(1 − 2v/π) with v = π/2 − 0.2, so y = r·0.4/π (camera above)
    assert torch.allclose(origins[:, 1], torch.full((11,), rig.radius * 0.4 / math.pi), atol=1e-4)
    yaw_edge = math.atan2(-origins[0, 0].item(), origins[0, 2].item())
    assert abs(yaw_edge) == pytest.approx(math.pi / 12, abs=1e-4)
    forward = cam2world[:, :3, 2]
    to_pivot = torch.tensor(rig.pivot) - origins
    assert torch.allclose(forward, to_pivot / to_pivot.norm(dim=1, keepdim=True), atol=1e-5)
    assert torch.allclose(intrinsics, fov_to_intrinsics().expand(11, 3, 3))


def test_corner_rays_span_the_field_of_view():
    fov = 18.837
    c = camera_vector(look_at_pose(math.pi / 2, math.pi / 2, (0.0, 0.0, 0.0), 2.7), fov_to_intrinsics(fov))
    cam2world, intrinsics = split_camera(c)
    origins, dirs = sample_rays(cam2world, intrinsics, 256)
    assert origins.shape == dirs.shape == (1, 256 * 256, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(1, 256 * 256), atol=1e-5)
    forward = cam2world[0, :3, 2]
    corner_angle = math.degrees(torch.arccos(dirs[0, 0] @ forward).item())
    assert corner_angle == pytest.approx(fov / 2, rel=0.01)
    centre = dirs[0].reshape(256, 256, 3)[127:129, 127:129].reshape(4, 3).mean(0)
    assert torch.allclose(centre / centre.norm(), forward, atol=1e-4)


def test_ray_box_limits_of_an_axis_ray():
    o = torch.tensor([[[0.0, 0.0, 2.7], [0.0, 3.0, 2.7]]])
    d = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]]])
    start, end = ray_box_limits(o, d, 1.0)
    assert start[0, 0].item() == pytest.approx(2.2) and end[0, 0].item() == pytest.approx(3.2)
    assert start[0, 1].item() == -1 and end[0, 1].item() == -2  # misses the box


def test_march_finds_an_opaque_surface():
    depths = torch.linspace(2.0, 3.0, 101).reshape(1, 1, 101, 1)
    dens = torch.where(depths > 2.5, torch.full_like(depths, 1e4), torch.full_like(depths, -1e4))
    colors = torch.zeros(1, 1, 101, 3)
    colors[..., 0] = 1.0
    rgb, depth, weights = march(colors, dens, depths)
    assert depth.item() == pytest.approx(2.5, abs=0.02)
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-3)
    assert torch.allclose(rgb, torch.tensor([[[1.0, -1.0, -1.0]]]), atol=1e-2)


def test_importance_samples_follow_the_weights():
    bins = torch.linspace(0, 1, 12).expand(1, 12)
    weights = torch.zeros(1, 10)
    weights[0, 6] = 1.0
    samples = sample_pdf(bins, weights, torch.rand(1, 200, generator=torch.Generator().manual_seed(0)))
    assert ((samples >= bins[0, 6]) & (samples <= bins[0, 7])).float().mean() > 0.95


def test_triplane_sampling_reads_the_three_planes_at_the_right_axes():
    planes = torch.zeros(1, 3, 1, 2, 2)
    planes[0, 0, 0, 0, 1] = 1.0  # plane (x, y): x > 0 (right column), y < 0 (top row)
    planes[0, 1, 0, 1, 0] = 2.0  # plane (x, z): x < 0, z > 0
    planes[0, 2, 0, 0, 0] = 3.0  # plane (z, x): z < 0, x < 0
    pts = torch.tensor([[[0.25, -0.25, 0.0], [-0.25, 0.0, 0.25], [-0.25, 0.0, -0.25]]])
    f = sample_triplanes(planes, pts, box_warp=1.0)[0, :, :, 0]  # [plane, point]
    assert f[0, 0] == 1.0 and f[1, 1] == 2.0 and f[2, 2] == 3.0
    outside = sample_triplanes(planes + 1, torch.tensor([[[0.9, 0.9, 0.9]]]), box_warp=1.0)
    assert outside.abs().max() == 0


class _TinyDecoder(torch.nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(c, 5)

    def forward(self, features, directions):
        x = self.fc(features.mean(1))
        return {"rgb": torch.sigmoid(x[..., 1:]), "sigma": x[..., :1] * 10}


@pytest.mark.parametrize("auto", [False, True])
def test_chunked_rendering_equals_one_pass(auto):
    c = CameraRig().views(2)
    cam2world, intrinsics = split_camera(c)
    origins, dirs = sample_rays(cam2world, intrinsics, 12)
    planes = torch.randn(2, 3, 6, 16, 16, generator=torch.Generator().manual_seed(1))
    opts = RenderingOptions(depth_resolution=10, depth_resolution_importance=10,
                            **({"ray_start": "auto", "ray_end": "auto"} if auto else {}))
    dec = _TinyDecoder(6)
    full = ImportanceRenderer()(planes, dec, origins, dirs, opts, torch.Generator().manual_seed(5))
    chunked = ImportanceRenderer(ray_chunk=17)(planes, dec, origins, dirs, opts, torch.Generator().manual_seed(5))
    for a, b in zip(full, chunked, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    other = ImportanceRenderer()(planes, dec, origins, dirs, opts, torch.Generator().manual_seed(6))
    assert not torch.allclose(full[0], other[0])  # the depth jitter is random …
    det = RenderingOptions(depth_resolution=10, depth_resolution_importance=10, deterministic=True)
    a = ImportanceRenderer()(planes, dec, origins, dirs, det, torch.Generator().manual_seed(5))
    b = ImportanceRenderer()(planes, dec, origins, dirs, det, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0])  # … unless rendering is deterministic
    assert full[0].shape == (2, 144, 4) and full[1].shape == (2, 144, 1)
    assert (full[1] >= 2.25).all() or auto
