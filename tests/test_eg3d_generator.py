"""The EG3D network and its `Generator` interface on a tiny random configuration."""

import copy
import math

import pytest
import torch

pytest.importorskip("legato.generators.stylegan2.layers", reason="needs the native StyleGAN2 layers")

from legato.errors import InputError  # noqa: E402
from legato.generators.eg3d import EG3DGenerator, EG3DOptions, build_eg3d  # noqa: E402
from legato.generators.eg3d.triplane import TriPlaneGenerator  # noqa: E402

TINY_RENDERING = dict(
    image_resolution=64, disparity_space_sampling=False, clamp_mode="softplus",
    superresolution_module="training.superresolution.SuperresolutionHybrid2X", c_gen_conditioning_zero=False,
    c_scale=1.0, superresolution_noise_mode="none", decoder_lr_mul=1.0, sr_antialias=True, depth_resolution=8,
    depth_resolution_importance=8, ray_start=2.25, ray_end=3.3, box_warp=1, avg_camera_radius=2.7,
    avg_camera_pivot=[0, 0, 0.2], backbone_resolution=32, sr_channels=[16, 8],
)
TINY = dict(z_dim=16, c_dim=25, w_dim=32, img_resolution=64, img_channels=3, sr_num_fp16_res=0,
            mapping_kwargs={"num_layers": 2}, channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None,
            fused_modconv_default="inference_only", rendering_kwargs=TINY_RENDERING,
            sr_kwargs=dict(channel_base=256, channel_max=16, fused_modconv_default="inference_only"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise(net: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            if name.endswith(("bias", "w_avg")) or "noise_strength" in name:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)


@pytest.fixture(scope="module")
def gen() -> EG3DGenerator:
    torch.manual_seed(0)
    net = TriPlaneGenerator(**copy.deepcopy(TINY))
    _randomise(net)
    return build_eg3d((), TINY, net.state_dict(), {"neural_rendering_resolution": 16})


def test_interface_shapes_and_w_avg(gen):
    assert (gen.z_dim, gen.w_dim, gen.c_dim, gen.img_resolution) == (16, 32, 25, 64)
    assert torch.equal(gen.w_avg, gen.net.backbone.mapping.w_avg)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = gen.mapping(z)
        assert ws.shape == (2, gen.num_ws, 32)
        assert torch.allclose(gen.mapping(z, truncation_psi=0.0), gen.w_avg.expand_as(ws), atol=1e-6)
        out = gen.render(ws, gen.views(2))
    assert out["image"].shape == (2, 3, 64, 64)
    assert out["image_raw"].shape == (2, 3, 16, 16) and out["image_depth"].shape == (2, 1, 16, 16)
    assert ((out["image_depth"] >= 2.25) & (out["image_depth"] <= 3.3)).all()
    assert gen.features(ws).shape == (2, 3, 32, 32, 32)
    assert torch.isfinite(out["image"]).all()
    with torch.no_grad():
        torch.manual_seed(0)
        img, planes = gen.synthesis_with_features(ws, gen.views(2))
        torch.manual_seed(0)
        assert torch.equal(img, gen.synthesis(ws, gen.views(2)))
    assert torch.equal(planes, gen.features(ws))


def test_the_camera_changes_the_image_but_not_the_triplanes(gen):
    ws = gen.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(1)))
    views = gen.views(3)
    with torch.no_grad():
        torch.manual_seed(0)
        left = gen.synthesis(ws, views[:1])
        torch.manual_seed(0)
        right = gen.synthesis(ws, views[2:])
    assert (left - right).abs().max() > 1e-3
    assert views.shape == (3, 25)
    with pytest.raises(InputError):
        gen.synthesis(ws, torch.zeros(1, 16))


def test_options_lower_resolution_and_chunking(gen):
    ws = gen.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        base = gen.render(ws, generator=torch.Generator().manual_seed(3))
        gen.configure(EG3DOptions(ray_chunk=37))
        chunked = gen.render(ws, generator=torch.Generator().manual_seed(3))
        gen.configure(EG3DOptions(neural_rendering_resolution=8, depth_resolution=6))
        low = gen.render(ws, generator=torch.Generator().manual_seed(3))
        gen.configure(EG3DOptions())
    assert torch.allclose(base["image"], chunked["image"], atol=1e-5)
    assert low["image_raw"].shape == (1, 3, 8, 8) and low["image"].shape == (1, 3, 64, 64)
    with pytest.raises(InputError):
        gen.configure(EG3DOptions(noise_mode="loud"))


def test_adapter_sites_are_the_backbone_blocks_with_an_input(gen):
    from legato.ode import attach

    sites = gen.adapter_sites()
    assert sites == [f"net.backbone.synthesis.b{r}.conv1" for r in (8, 16, 32)]
    names = dict(gen.named_modules())
    assert all(s in names for s in sites)
    g2 = copy.deepcopy(gen)
    ws = g2.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(4)))
    adapters = attach(g2, sites, name="t", hidden=8)
    with torch.no_grad():
        for p in adapters.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
        changed = g2.features(ws)
        adapters.detach()
        restored = g2.features(ws)
        original = gen.features(ws)
    assert (changed - original).abs().max() > 1e-4
    assert torch.allclose(restored, original, atol=1e-6)
    fine_tuned = {id(p) for p in gen.synthesis_parameters()}
    assert not any(id(p) in fine_tuned for p in gen.net.backbone.mapping.parameters())
    # GUIDE's reference trains the backbone's synthesis network only
    assert all(id(p) in fine_tuned for p in gen.net.backbone.synthesis.parameters())
    assert not any(id(p) in fine_tuned for p in gen.net.superresolution.parameters())
    assert not any(id(p) in fine_tuned for p in gen.net.decoder.parameters())
    assert len(fine_tuned) == len(list(gen.net.backbone.synthesis.parameters()))
    # the continuous training camera spans the evaluation views' yaw range
    assert torch.allclose(gen.view_at(0.0), gen.views(11)[:1], atol=1e-5)
    assert torch.allclose(gen.view_at(1.0), gen.views(11)[-1:], atol=1e-5)
    assert torch.allclose(gen.view_at(0.5), gen.views(11)[5:6], atol=1e-5)


def test_bad_tensors_are_refused():
    from legato.errors import CheckpointError

    torch.manual_seed(0)
    net = TriPlaneGenerator(**copy.deepcopy(TINY))
    state = net.state_dict()
    state.pop("decoder.net.0.weight")
    with pytest.raises(CheckpointError):
        build_eg3d((), TINY, state)
    with pytest.raises(CheckpointError):
        build_eg3d((), {k: v for k, v in TINY.items() if k != "w_dim"}, net.state_dict())


def test_front_camera_is_the_default(gen):
    ws = gen.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(6)))
    front = gen.rig.camera(0.0, 0.0)
    with torch.no_grad():
        a = gen.render(ws, generator=torch.Generator().manual_seed(0))["image"]
        b = gen.render(ws, front, generator=torch.Generator().manual_seed(0))["image"]
    assert torch.equal(a, b)
    assert math.isclose(front[0, 11].item(), 2.7, rel_tol=1e-5)  # camera z on the front axis


def test_projection_of_a_rendered_photo(gen):
    from legato.inversion.projection import ProjectionConfig, Projector

    with torch.no_grad():
        ws_true = gen.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(9)))
        photo = gen.render(ws_true, generator=torch.Generator().manual_seed(0))["image"]
    inverter = gen.inverter()
    assert isinstance(inverter, Projector) and inverter.config.steps >= 100  # "a few hundred" by default
    proj = Projector(gen, ProjectionConfig(steps=25, w_samples=500))
    with torch.no_grad():
        ws = proj(photo)
    assert ws.shape == (1, gen.num_ws, gen.w_dim)

    def err(w):
        with torch.no_grad():
            return (gen.render(w, generator=torch.Generator().manual_seed(0))["image"] - photo).pow(2).mean().item()

    start = gen.w_avg[None, None].repeat(1, gen.num_ws, 1)
    assert err(ws) < 0.5 * err(start)


def test_reference_protocol_is_the_default_preset_and_sets_noise_and_pivot(gen):
    from legato.unlearning.config import UnlearnConfig

    cfg = UnlearnConfig.for_generator(gen)
    assert cfg.preset == "reference" and cfg.reduction == "sum" and cfg.training_camera == "continuous"
    assert UnlearnConfig.for_generator(gen, preset="none").preset is None
    assert UnlearnConfig.for_generator(gen, preset="none").reduction == "mean"
    g = copy.deepcopy(gen)
    front_before = g.views(1)
    changes = g.use_reference_protocol()
    assert g.options.noise_mode == "random" and tuple(g.rig.pivot) == (0.0, 0.0, 0.0)
    assert len(changes) == 2 and "pivot" in changes[1]
    assert not torch.allclose(g.views(1), front_before)  # the cameras now look at the origin
    assert g.use_reference_protocol() == []  # nothing left to change
    assert gen.options.noise_mode == "const"  # the shared fixture is untouched


def test_the_gated_field_reads_each_block_latent(gen):
    """EG3D's conv1 layers are called as layer(x, w, ...): the gated field finds its latent there, and a
    shut gate leaves the features as they were."""
    from legato.ode import attach

    g2 = copy.deepcopy(gen)
    ws = g2.mapping(torch.randn(2, 16, generator=torch.Generator().manual_seed(4)))
    adapters = attach(g2, g2.adapter_sites(), name="gated", field="gated", hidden=8)
    assert adapters.config.condition_dim == 32
    with torch.no_grad():
        for p in adapters.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
        opened = g2.features(ws)
        for adapter in adapters:
            adapter.field.gate[2].weight.zero_()
            adapter.field.gate[2].bias.fill_(-60.0)
        shut = g2.features(ws)
        original = gen.features(ws)
    assert (opened - original).abs().max() > 1e-4
    assert torch.allclose(shut, original, atol=1e-5)
