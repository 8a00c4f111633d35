"""ΔFID_real from a folder of real images (features cached) or a statistics file, for generators without
real images of their own (EG3D)."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from legato.errors import InputError
from legato.evaluation.fid import FeatureExtractor, frechet_distance
from legato.evaluation.real_data import fid_from_statistics, load_real_reference


def _extractor():
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1)

    return FeatureExtractor(fn, "test-features"), calls


def _folder(tmp_path, n=7, size=20):
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_features_are_cached_and_the_cache_follows_the_files(tmp_path):
    folder, cache = _folder(tmp_path), tmp_path / "cache"
    ext, calls = _extractor()
    first = load_real_reference(folder, ext, n=5, size=16, batch_size=2, cache=cache)
    assert first.features.shape == (5, 6) and not first.cached and sum(calls) == 5
    second = load_real_reference(folder, ext, n=5, size=16, batch_size=2, cache=cache)
    assert second.cached and torch.equal(second.features, first.features) and sum(calls) == 5
    # another image under the same name is another set
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "000.png")
    os.utime(folder / "000.png", ns=(1, 1))
    third = load_real_reference(folder, ext, n=5, size=16, batch_size=2, cache=cache)
    assert not third.cached and not torch.equal(third.features, first.features)


def test_statistics_file_gives_the_same_fid_as_the_features(tmp_path):
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(400, 4, generator=g, dtype=torch.float64), torch.randn(300, 4, generator=g,
                                                                                  dtype=torch.float64) + 0.5
    np.savez(tmp_path / "stats.npz", mu=real.mean(0).numpy(), sigma=torch.cov(real.t()).numpy())
    ref = load_real_reference(tmp_path / "stats.npz", _extractor()[0], n=10, size=16)
    assert ref.features is None
    assert fid_from_statistics(fake, ref.mu, ref.sigma) == pytest.approx(frechet_distance(real, fake), rel=1e-6)
    with pytest.raises(InputError, match="features"):
        fid_from_statistics(fake[:, :3], ref.mu, ref.sigma)


def test_bad_real_inputs_are_refused_in_one_line(tmp_path):
    ext = _extractor()[0]
    with pytest.raises(InputError, match="no such file"):
        load_real_reference(tmp_path / "missing", ext, 5, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        load_real_reference(tmp_path / "empty", ext, 5, 16)
    (tmp_path / "x.txt").write_text("?")
    with pytest.raises(InputError, match="folder of images or a statistics"):
        load_real_reference(tmp_path / "x.txt", ext, 5, 16)
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(InputError, match="mu and sigma"):
        load_real_reference(tmp_path / "bad.npz", ext, 5, 16)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read"):
        load_real_reference(broken, ext, 5, 16, cache=tmp_path / "c")


def test_evaluate_reports_delta_fid_real_from_a_folder_or_says_why_not(tmp_path, monkeypatch):
    from legato.evaluation.metrics import evaluate
    from legato.generators import load

    monkeypatch.setenv("LEGATO_CACHE", str(tmp_path / "cache"))
    gen = load("toy")
    monkeypatch.setattr(type(gen), "real_images", lambda self, n, seed=0: None)
    ws = gen.mapping(torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(1))).detach()
    ext = _extractor()[0]
    folder = _folder(tmp_path, n=12, size=gen.img_resolution)
    without = evaluate(gen, gen, ws, n_random=2, n_fid=8, fid_features=ext, progress=False, fid_bootstrap=0)
    assert without["delta_fid_real"] is None and "real-images" in without["delta_fid_real_note"]
    with_real = evaluate(gen, gen, ws, n_random=2, n_fid=8, fid_features=ext, progress=False, fid_bootstrap=0,
                         real_reference=folder)
    assert with_real["delta_fid_real"] == pytest.approx(0.0, abs=1e-9)  # the same model on both sides
    assert with_real["delta_fid_real_n"] == 8 and with_real["fid_real_source"] > 0
    assert any((tmp_path / "cache" / "fid").iterdir())
