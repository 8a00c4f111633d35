"""Growing the SynthFaces generator, the renderer's feature regions and the detail measurements."""

import pytest
import torch

from legato.synthfaces import params as P
from legato.synthfaces.detail import FEATURES, FeatureProbe, feature_labels, measure_detail
from legato.synthfaces.generator import GeneratorConfig, SynthFacesGenerator, load_generator, save_generator
from legato.synthfaces.grow import grow_generator
from legato.synthfaces.renderer import feature_regions, render

SMALL = GeneratorConfig(channels={4: 16, 8: 16, 16: 8, 32: 8, 64: 4}, w_dim=16, mapping_layers=2)
WIDER = GeneratorConfig(channels={4: 16, 8: 16, 16: 8, 32: 12, 64: 6}, w_dim=16, mapping_layers=2,
                        coord_resolutions=[16, 32, 64])


def _trained_looking(cfg):
    """A random network whose styles and biases are not at their neutral init (so growing has work to do)."""
    torch.manual_seed(1)
    g = SynthFacesGenerator(cfg)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if "affine" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    return g.eval()


def test_growing_keeps_the_images_and_then_can_learn():
    old = _trained_looking(SMALL)
    new = grow_generator(old, WIDER).eval()
    z, cam = torch.randn(4, P.Z_DIM), P.random_camera(4)
    with torch.no_grad():
        assert torch.allclose(old(z, cam), new(z, cam), atol=1e-5)
    assert new.synthesis_network.b64.conv1.coords and new.synthesis_network.b64.conv1.out_channels == 6
    # the zero-initialised columns get gradients at once (new features are non-zero)
    new.requires_grad_(True).train()
    new(z, cam).square().mean().backward()
    w = new.synthesis_network.b64.conv1.weight
    assert w.grad[:4, 4:6].abs().sum() > 0 and w.grad[:4, 6:].abs().sum() > 0


def test_grown_generator_round_trips(tmp_path):
    new = grow_generator(_trained_looking(SMALL), WIDER).eval()
    save_generator(new, tmp_path / "g.safetensors")
    back = load_generator(path=tmp_path / "g.safetensors")
    assert back.config.coord_resolutions == [16, 32, 64] and back.config.channels[64] == 6
    z, cam = torch.randn(2, P.Z_DIM), P.random_camera(2)
    with torch.no_grad():
        assert torch.allclose(back(z, cam), new(z, cam), atol=3e-2)  # float16 storage


def test_growing_refuses_to_shrink_or_change_the_latent():
    with pytest.raises(ValueError, match="shrink"):
        grow_generator(_trained_looking(WIDER), GeneratorConfig(**{**WIDER.__dict__, "channels": SMALL.channels}))
    with pytest.raises(ValueError, match="w_dim"):
        grow_generator(_trained_looking(SMALL), GeneratorConfig(**{**SMALL.__dict__, "w_dim": 8}))


def test_feature_regions_cover_the_drawn_eyes_and_mouth():
    # a person with large open eyes facing the camera: the eye pixels (the renderer's difference between
    # eyes wide open and half open) lie inside the eye region, and the region is a small part of the image
    idn = P.identity_from_seed(1_000_003)[None].clone()
    nui = torch.full((1, P.N_NUISANCE), 0.5)
    cam = torch.zeros(1, 2)
    idn[0, P.IDENTITY_PARAMS.index("eye_size")] = 1.0
    idn[0, P.IDENTITY_PARAMS.index("glasses")] = 0.0
    nui[0, P.NUISANCE_PARAMS.index("eye_openness")] = 1.0
    shut = nui.clone()
    shut[0, P.NUISANCE_PARAMS.index("eye_openness")] = 0.0  # the least open in-domain eyes
    diff = (render(idn, nui, cam) - render(idn, shut, cam)).abs().amax(1)[0] > 0.05
    regions = feature_regions(idn, nui, cam)
    assert diff.sum() > 10
    assert (regions["eyes"][0][diff]).mean() > 0.95
    assert 0.01 < regions["eyes"].mean() < 0.15 and 0.005 < regions["mouth"].mean() < 0.1
    wide = nui.clone()
    wide[0, P.NUISANCE_PARAMS.index("smile")] = 1.0
    mouth_diff = (render(idn, nui, cam) - render(idn, wide, cam)).abs().amax(1)[0] > 0.05
    assert (regions["mouth"][0][mouth_diff]).float().mean() > 0.8


def test_feature_labels_follow_the_parameters():
    idn = torch.full((3, P.N_IDENTITY), 0.5)
    idn[0, P.IDENTITY_PARAMS.index("glasses")] = 0.9
    idn[1, P.IDENTITY_PARAMS.index("facial_hair")] = 0.9
    idn[:, P.IDENTITY_PARAMS.index("eye_color")] = torch.tensor([0.1, 0.5, 0.9])
    labels = feature_labels(idn)
    assert labels["glasses"].tolist() == [1, 0, 0] and labels["beard"].tolist() == [0, 1, 0]
    assert labels["eye_color"].tolist() == [0, 1, 2]


def test_measure_detail_tells_a_copy_of_the_renderer_from_a_blur():
    class RendererCopy(torch.nn.Module):
        def __init__(self, blur: bool):
            super().__init__()
            self.blur = blur

        def forward(self, z, cam):
            idn, nui = P.split(P.z_to_params(z))
            img = render(idn, nui, cam)
            return torch.nn.functional.avg_pool2d(img, 5, 1, 2, count_include_pad=False) if self.blur else img

    class Embed(torch.nn.Module):  # a stand-in identity model: downsampled pixels
        threshold = 0.9

        def embed(self, x):
            return torch.nn.functional.normalize(torch.nn.functional.avg_pool2d(x, 8).flatten(1), dim=1)

    probe = FeatureProbe().eval()
    exact = measure_detail(RendererCopy(False), n=20, batch=10, probe=probe, identity_model=Embed())
    blurred = measure_detail(RendererCopy(True), n=20, batch=10, probe=probe, identity_model=Embed())
    assert exact["l1_eyes"] == 0 and exact["l1_image"] == 0
    assert all(exact[f"agreement_{k}"] == 1.0 for k in FEATURES)
    assert blurred["l1_eyes"] > 2 * blurred["l1_image"] > 0  # detail lives in the regions
    assert blurred["l1_mouth"] > blurred["l1_image"]


def test_feature_masks_come_with_the_same_render_and_sit_in_the_regions():
    from legato.synthfaces.renderer import MASK_NAMES, render_with_masks

    g = torch.Generator().manual_seed(2)
    z = torch.randn(6, P.Z_DIM, generator=g)
    cam = P.random_camera(6, generator=g)
    idn, nui = P.split(P.z_to_params(z))
    img, masks = render_with_masks(idn, nui, cam)
    assert torch.equal(img, render(idn, nui, cam))
    assert masks.shape == (6, len(MASK_NAMES), 64, 64) and masks.min() >= 0 and masks.max() <= 1
    iris = masks[:, MASK_NAMES.index("iris")]
    assert (iris.flatten(1).amax(1) > 0.5).all()  # every face shows an iris
    eyes = feature_regions(idn, nui, cam)["eyes"]
    assert (iris * eyes).sum() > 0.95 * iris.sum()  # and it lies in the eye region


def test_mask_loss_rewards_finding_the_features():
    from legato.synthfaces.train_generator import mask_loss

    masks = torch.zeros(2, 3, 8, 8)
    masks[:, :, 2:4, 2:4] = 1.0
    right = mask_loss((masks * 2 - 1) * 8, masks)
    blind = mask_loss(torch.full_like(masks, -8.0), masks)  # "nothing anywhere" is cheap without the weighting
    assert right < 0.01 < blind


def test_mouth_errors_split_the_same_error_that_measure_detail_reports():
    from legato.synthfaces.detail import mouth_errors

    gen = load_generator()
    split = mouth_errors(gen, n=40, batch=20)
    assert split["l1_mouth"] == measure_detail(gen, n=40, batch=20)["l1_mouth"]
    for groups in (split["by_smile"], split["by_beard"]):
        assert sum(g["n"] for g in groups.values()) == 40
        assert abs(sum(g["share_of_error"] for g in groups.values()) - 1.0) < 0.01
    assert split["per_latent"].shape == (40,) and split["fake"].shape == split["real"].shape
    rings = split["by_distance_from_lips"]
    assert abs(sum(r["share_of_error"] for r in rings.values()) - 1.0) < 0.01  # the rings partition the region
    assert rings["lips and teeth"]["pixels_per_image"] > 5 and rings["farther"]["pixels_per_image"] > 5
    floors = split["render_degraded"]  # more blur, more error; none of them is free
    assert 0 < floors["blurred, sigma 0.5 px"] < floors["blurred, sigma 1 px"]

    class Renderer(torch.nn.Module):  # a generator that draws exactly the render has no mouth error
        def forward(self, z, cam):
            return render(*P.split(P.z_to_params(z)), cam)

    assert mouth_errors(Renderer(), n=10)["l1_mouth"] == 0.0
