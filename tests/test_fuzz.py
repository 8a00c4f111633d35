"""Damaged files, made by flipping, cutting, repeating and inserting bytes of good ones: the NVlabs pickle
loader, the adapter-bundle loader and the checkpoint reader either load the file or raise a `LegatoError`
(one line for the user), never another exception, and never run code from it.

The default suite tries `FUZZ_CASES` (300) damaged files per loader; the slow one 10,000
(`pytest -m slow tests/test_fuzz.py`, a few minutes). Each case is fixed by its seed, so a failure repeats."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from legato.errors import LegatoError

FUZZ_CASES = int(os.environ.get("FUZZ_CASES", "300"))
SLOW_CASES = 10_000


def _damaged(data: bytes, rng: random.Random) -> bytes:
    """One to four edits of `data`: flipped bits, random bytes, a cut, a repeated or a deleted stretch."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        i = rng.randrange(max(1, len(b)))
        if kind == 0 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and b:
            b[i] = rng.randrange(256)
        elif kind == 2:
            b = b[:i]
        elif kind == 3:
            n = rng.randint(1, 64)
            b[i:i] = b[i:i + n]
        elif kind == 4:
            del b[i:i + rng.randint(1, 64)]
        else:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b)


def _fuzz(good: bytes, path: Path, load, cases: int, seed: int) -> dict:
    """Write `cases` damaged copies of `good` to `path` and load each; count the outcomes."""
    counts = {"loaded": 0, "refused": 0}
    for case in range(cases):
        rng = random.Random(seed * 1_000_003 + case)
        path.write_bytes(_damaged(good, rng))
        try:
            load(path)
        except LegatoError as e:
            assert "\n" not in str(e).strip(), f"case {case}: a refusal of more than one line: {e}"
            counts["refused"] += 1
        except Exception as e:  # noqa: BLE001 (what the test is for)
            raise AssertionError(f"case {case} (seed {seed}): {type(e).__name__}: {e}") from e
        else:
            counts["loaded"] += 1
    return counts


@pytest.fixture(scope="module")
def good_pickle(tmp_path_factory) -> bytes:
    from legato.generators.nvlabs import write_network_pickle
    from legato.generators.stylegan2.networks import StyleGAN2Network, network_parts

    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=1),
                  channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=256)
    torch.manual_seed(0)
    parts = network_parts(StyleGAN2Network(**kwargs), kwargs)
    path = write_network_pickle(tmp_path_factory.mktemp("p") / "g.pkl", {"G_ema": parts})
    return path.read_bytes()


def _load_pickle(path):
    from legato.generators.nvlabs import load_network_pickle

    load_network_pickle(path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from legato.generators.toy import ToyGenerator
    from legato.ode import attach, save_bundle

    torch.manual_seed(0)
    model = ToyGenerator()
    adapters = attach(model, model.adapter_sites(), name="forget", hidden=4)
    folder = save_bundle(adapters, tmp_path_factory.mktemp("b") / "bundle")
    adapters.detach()
    return folder


def _bundle_loader(folder: Path, damaged_name: str):
    from legato.generators.toy import ToyGenerator
    from legato.ode import load_bundle

    def load(path):
        target = folder / damaged_name
        target.write_bytes(path.read_bytes())
        torch.manual_seed(0)
        load_bundle(folder, ToyGenerator()).detach()

    return load


def _run_all(cases: int, tmp_path: Path, pickle_bytes: bytes, bundle_folder: Path) -> dict:
    import shutil

    from legato.ode.bundle import CONFIG_NAME, WEIGHTS_NAME
    from legato.training_state import read_state, write_state

    results = {"nvlabs pickle": _fuzz(pickle_bytes, tmp_path / "g.pkl", _load_pickle, cases, seed=1)}
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        folder = tmp_path / f"bundle-{name}"
        shutil.copytree(bundle_folder, folder)
        good = (folder / name).read_bytes()
        results[f"bundle {name}"] = _fuzz(good, tmp_path / f"{name}.damaged", _bundle_loader(folder, name),
                                         cases, seed=2 if name == WEIGHTS_NAME else 3)
    write_state(tmp_path / "good.pt", {"step": 3, "w": torch.ones(4), "opt": {"state": {}, "lr": 0.1}})
    results["checkpoint"] = _fuzz((tmp_path / "good.pt").read_bytes(), tmp_path / "c.pt", read_state, cases, seed=4)
    return results


def test_damaged_files_load_or_are_refused_in_one_line(tmp_path, good_pickle, bundle):
    results = _run_all(FUZZ_CASES, tmp_path, good_pickle, bundle)
    for name, counts in results.items():
        assert counts["loaded"] + counts["refused"] == FUZZ_CASES, name
        assert counts["refused"] > FUZZ_CASES // 4, f"{name}: most damage should be caught ({counts})"


@pytest.mark.slow
def test_ten_thousand_damaged_files_each(tmp_path, good_pickle, bundle):
    results = _run_all(SLOW_CASES, tmp_path, good_pickle, bundle)
    print(results)  # the counts (pytest -s shows them)
    assert all(c["loaded"] + c["refused"] == SLOW_CASES for c in results.values())
