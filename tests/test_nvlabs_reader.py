"""NVlabs network pickles: round trip through the project's writer, safe refusal of foreign globals."""

import pickle

import pytest
import torch

from legato.errors import CheckpointError
from legato.generators import load
from legato.generators.nvlabs import load_network_pickle, read_network_pickle, write_network_pickle
from legato.generators.nvlabs.writer import network_pickle_bytes
from legato.generators.stylegan2.networks import StyleGAN2Generator, StyleGAN2Network, network_parts

SMALL = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
             mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=256)


def _randomised(kwargs, seed=0) -> StyleGAN2Network:
    torch.manual_seed(seed)
    net = StyleGAN2Network(**kwargs).eval()
    with torch.no_grad():  # non-trivial biases, noise strengths and w_avg so that loading errors show
        for name, p in net.named_parameters():
            if "noise_strength" in name or (name.endswith("bias") and "affine" not in name):
                p.normal_(0, 0.5)
        net.mapping.w_avg.normal_()
    return net


def _write(path, net, kwargs, **kw):
    parts = network_parts(net, kwargs)
    return write_network_pickle(path, {"G": parts, "D": None, "G_ema": parts}, **kw)


def test_round_trip_renders_the_same_images(tmp_path):
    net = _randomised(SMALL)
    path = _write(tmp_path / "net.pkl", net, SMALL)
    gen = load(str(path))
    assert isinstance(gen, StyleGAN2Generator)
    assert (gen.z_dim, gen.w_dim, gen.num_ws, gen.img_resolution, gen.c_dim) == (16, 16, 8, 32, 0)
    z = torch.randn(3, 16)
    with torch.no_grad():
        expected = net(z, None, truncation_psi=0.7, noise_mode="const")
        got = gen(z, truncation_psi=0.7)
    assert torch.equal(got, expected)
    assert gen.adapter_sites() == ["synthesis_network.b8.conv1", "synthesis_network.b16.conv1",
                                   "synthesis_network.b32.conv1"]
    assert gen.views(5).shape == (5, 0)
    ws = gen.mapping(z, truncation_psi=0.7)
    img, feats = gen.synthesis_with_features(ws)
    assert torch.equal(img, got) and feats.shape == (3, 16, 16, 16)


def test_fp16_tensors_and_conditional_model(tmp_path):
    kwargs = {**SMALL, "c_dim": 3}
    net = _randomised(kwargs, seed=1)
    parts = network_parts(net, kwargs)
    parts["tensors"] = {k: (v.half() if "synthesis.b32" in k else v) for k, v in parts["tensors"].items()}
    path = write_network_pickle(tmp_path / "c.pkl", {"G_ema": parts})
    gen = load_network_pickle(path)
    assert gen.views(2).shape == (2, 3) and not gen.views(2).any()
    z = torch.randn(2, 16)
    assert gen(z).shape == (2, 3, 32, 32) and gen.synthesis_network.b32.conv1.weight.dtype == torch.float32


def test_module_source_is_never_executed(tmp_path):
    marker = tmp_path / "ran.txt"
    src = f"open({str(marker)!r}, 'w').write('module source ran')\n"
    path = _write(tmp_path / "net.pkl", _randomised(SMALL), SMALL, module_src=src)
    contents = read_network_pickle(path)
    assert contents["G_ema"].module_src == src
    load_network_pickle(path)(torch.randn(1, 16))
    assert not marker.exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",)


def test_malicious_global_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pkl"
    parts = network_parts(_randomised(SMALL), SMALL)
    parts["attributes"] = {**parts["attributes"], "payload": _Payload(marker)}
    path.write_bytes(network_pickle_bytes({"G_ema": parts}))
    with pytest.raises(CheckpointError, match=r"builtins\.exec"):
        load_network_pickle(path)
    assert not marker.exists()
    # the payload is real: unpickled on its own by the unrestricted pickle module, it runs
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()


def test_unreadable_files_give_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="not a readable network pickle"):
        read_network_pickle(bad)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError, match="no generator network"):
        load_network_pickle(plain)


REAL = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
            mapping_kwargs=dict(num_layers=8), channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)


@pytest.mark.slow
def test_real_size_config_round_trip(tmp_path):
    net = _randomised(REAL)
    path = _write(tmp_path / "ffhq256-like.pkl", net, REAL)
    gen = load_network_pickle(path)
    assert (gen.num_ws, gen.w_dim, gen.img_resolution) == (14, 512, 256)
    assert len([k for k in gen.mapping_network.state_dict() if k.endswith(".weight")]) == 8
    z = torch.randn(1, 512)
    with torch.no_grad():
        assert torch.equal(gen(z), net(z, None, noise_mode="const"))
