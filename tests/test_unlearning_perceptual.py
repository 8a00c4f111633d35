"""Which perceptual loss runs: LPIPS-VGG (the reference's) when its weights are cached, else AlexNet, else
the offline fallbacks."""

import sys
import types

import torch

from legato.unlearning.losses import make_perceptual


def _fake_lpips(monkeypatch, tmp_path, cached: list[str]):
    made = []

    class LPIPS(torch.nn.Module):
        def __init__(self, net="alex", verbose=True):
            super().__init__()
            made.append(net)

        def forward(self, a, b):
            return (a - b).abs().mean((1, 2, 3))

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=LPIPS))
    (tmp_path / "checkpoints").mkdir(parents=True)
    for name in cached:
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return made


def test_vgg_first_then_alex_then_the_fallback(monkeypatch, tmp_path):
    made = _fake_lpips(monkeypatch, tmp_path / "a", ["alexnet-owt-7be5be79.pth", "vgg16-397923af.pth"])
    assert make_perceptual("auto", None).name == "lpips-vgg" and made == ["vgg"]
    made = _fake_lpips(monkeypatch, tmp_path / "b", ["alexnet-owt-7be5be79.pth"])
    assert make_perceptual("lpips", None).name == "lpips-alex" and made == ["alex"]
    _fake_lpips(monkeypatch, tmp_path / "c", [])
    assert make_perceptual("auto", None).name == "multiscale-l1"
