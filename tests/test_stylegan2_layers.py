"""StyleGAN2 building blocks: shapes, demodulation, FIR upsampling, architectures, mapping/truncation."""

import math

import pytest
import torch

from legato.generators.stylegan2.layers import (
    FullyConnectedLayer,
    MappingNetwork,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)


def _small_synthesis(**kw) -> SynthesisNetwork:
    torch.manual_seed(0)
    return SynthesisNetwork(w_dim=16, img_resolution=32, img_channels=3, channel_base=256, channel_max=16, **kw)


def test_fully_connected_gains():
    torch.manual_seed(0)
    fc = FullyConnectedLayer(8, 4, lr_multiplier=0.01, bias_init=1)
    x = torch.randn(3, 8)
    expected = x @ (fc.weight * 0.01 / math.sqrt(8)).t() + fc.bias * 0.01
    assert torch.allclose(fc(x), expected, atol=1e-6)


def test_demodulation_gives_unit_norm_kernels():
    torch.manual_seed(0)
    weight = torch.randn(5, 4, 3, 3)
    styles = torch.rand(2, 4) + 0.5
    x = torch.zeros(2, 4, 7, 7)
    x[:, :, 3, 3] = 1.0  # an impulse per input channel reads the kernel back out
    out = modulated_conv2d(x, weight, styles, padding=1)
    # impulse response at the centre 3×3 = the modulated, demodulated kernel summed over inputs;
    # check against the explicit formula instead
    w = weight[None] * styles[:, None, :, None, None]
    w = w / w.square().sum(dim=[2, 3, 4], keepdim=True).sqrt()
    ref = torch.stack([torch.nn.functional.conv2d(x[i:i + 1], w[i], padding=1)[0] for i in range(2)])
    assert torch.allclose(out, ref, atol=1e-5)
    # scaling the styles does not change a demodulated convolution
    assert torch.allclose(modulated_conv2d(x, weight, styles * 3.0, padding=1), out, atol=1e-5)
    assert not torch.allclose(modulated_conv2d(x, weight, styles * 3.0, padding=1, demodulate=False),
                              modulated_conv2d(x, weight, styles, padding=1, demodulate=False))


def test_fused_and_unfused_modconv_agree():
    torch.manual_seed(0)
    layer = SynthesisLayer(6, 5, w_dim=16, resolution=16, up=2)
    x, w = torch.randn(3, 6, 8, 8), torch.randn(3, 16)
    a = layer(x, w, noise_mode="const", fused_modconv=True)
    b = layer(x, w, noise_mode="const", fused_modconv=False)
    assert a.shape == (3, 5, 16, 16) and layer.out_channels == 5
    assert torch.allclose(a, b, atol=1e-5)


def test_upsampling_filter_keeps_constants_and_doubles_size():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and torch.isclose(f.sum(), torch.tensor(1.0))
    x = torch.full((1, 2, 6, 6), 0.7)
    up = upsample2d(x, f)
    assert up.shape == (1, 2, 12, 12)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.7), atol=1e-6)
    # an impulse upsampled 2× spreads into the [1,3,3,1] kernel pattern
    imp = torch.zeros(1, 1, 4, 4)
    imp[0, 0, 1, 1] = 1.0
    out = upsample2d(imp, f)
    assert torch.isclose(out.sum(), torch.tensor(4.0))  # gain up² preserves the mean value
    assert out.abs().gt(0).sum() == 16
    # plain filtering with a normalised box filter preserves a constant image in the interior
    box = upfirdn2d(x, setup_filter([1, 1]), padding=[1, 0, 1, 0])
    assert torch.allclose(box[:, :, 1:, 1:], torch.full_like(box[:, :, 1:, 1:], 0.7))


@pytest.mark.parametrize("architecture", ["skip", "orig", "resnet"])
def test_synthesis_network_shapes(architecture):
    net = _small_synthesis(architecture=architecture)
    assert net.num_ws == 8 and net.block_resolutions == [4, 8, 16, 32]
    ws = torch.randn(2, net.num_ws, 16)
    img = net(ws, noise_mode="const")
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    assert torch.equal(img, net(ws, noise_mode="const"))
    assert hasattr(net.b8, "skip") == (architecture == "resnet")
    assert hasattr(net.b8, "torgb") == (architecture == "skip")
    assert net.b4.in_channels == 0 and hasattr(net.b4, "const") and not hasattr(net.b4, "conv0")


def test_noise_modes_and_use_noise_switch():
    torch.manual_seed(0)
    block = SynthesisBlock(8, 8, w_dim=16, resolution=8, img_channels=3, is_last=True)
    for layer in (block.conv0, block.conv1):
        layer.noise_strength.data.fill_(1.0)
    x, ws = torch.randn(1, 8, 4, 4), torch.randn(1, 3, 16)
    const = block(x, None, ws, noise_mode="const")[1]
    assert torch.equal(const, block(x, None, ws, noise_mode="const")[1])
    assert not torch.allclose(const, block(x, None, ws, noise_mode="random")[1])
    none = block(x, None, ws, noise_mode="none")[1]
    block.conv0.use_noise = block.conv1.use_noise = False
    assert torch.equal(none, block(x, None, ws, noise_mode="random")[1])


def test_mapping_network_truncation_and_names():
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=8, c_dim=3, w_dim=16, num_ws=5, num_layers=2)
    assert {"embed.weight", "fc0.weight", "fc1.bias", "w_avg"} <= set(mapping.state_dict())
    mapping.w_avg.normal_()
    z, c = torch.randn(4, 8), torch.randn(4, 3)
    ws = mapping(z, c)
    assert ws.shape == (4, 5, 16) and torch.equal(ws[:, 0], ws[:, 4])
    assert torch.allclose(mapping(z, c, truncation_psi=0.0), mapping.w_avg.expand(4, 5, 16))
    cut = mapping(z, c, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], mapping.w_avg.expand(4, 2, 16)) and torch.equal(cut[:, 2:], ws[:, 2:])
    before = mapping.w_avg.clone()
    mapping(z, c, update_emas=True)
    assert not torch.equal(before, mapping.w_avg)
