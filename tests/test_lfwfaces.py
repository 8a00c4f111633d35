"""The lfw-faces world: its folder format, its sampler, its judge's bookkeeping, and that no photo ships."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from legato.errors import InputError  # noqa: E402
from legato.lfwfaces import judge as J  # noqa: E402
from legato.lfwfaces.train import UNetShape, build_unet, save_folder  # noqa: E402
from legato.lfwfaces.world import WORLD_FOLDER, euler_sample, initial_noise, load_world, sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    unet = build_unet(3, 16, UNetShape(block_out_channels=(8, 16), attention_at=1, norm_num_groups=4))
    out = tmp_path_factory.mktemp("w") / "tiny"
    save_folder(unet, out, {"format": "legato-lfw-faces", "people": ["A_a", "B_b", "C_c"], "size": 16,
                            "null_class": 3, "total_steps": 0})
    return out


def test_scheduler_sampling_is_the_written_out_euler(tiny_folder):
    world = load_world(tiny_folder)
    labels = torch.tensor([0, 1, 2, 3])
    noise = initial_noise(4, 16, seed=5)
    for guidance in (1.0, 2.5):
        a = sample(world, labels, noise=noise, steps=4, guidance=guidance)
        b = euler_sample(world, labels, noise, steps=4, guidance=guidance)
        assert a.shape == (4, 3, 16, 16)
        assert torch.allclose(a, b, atol=1e-5)
    # guidance changes a conditional sample (else the nobody branch would be ignored)
    assert not torch.allclose(sample(world, labels[:1], noise=noise[:1], steps=4, guidance=1.0),
                              sample(world, labels[:1], noise=noise[:1], steps=4, guidance=3.0))


def test_bad_folders_and_labels_are_clear_errors(tiny_folder, tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        load_world(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny_folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "legato_world.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="expected 'legato-lfw-faces'"):
        load_world(bad)
    world = load_world(tiny_folder)
    with pytest.raises(InputError, match="class labels"):
        sample(world, torch.tensor([7]), steps=1)
    with pytest.raises(InputError, match="not one of the 3 people"):
        world.label_of("Nobody_Here")
    assert world.label_of("b b") == 1


def test_the_shipped_world_loads_and_samples():
    world = load_world()
    assert len(world.people) == 62 and world.null_class == 62 and world.size == 32
    assert world.meta["n_held_out_photos"] > 0
    x = sample(world, torch.tensor([0, 61]), steps=2)
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()
    assert x.std() > 0.05  # not a flat image


def test_fixed_crop_is_the_025_chip_inside_the_04_chip():
    lo, hi = J.FIXED_CROP
    # dlib's chip maps the face template's [0, 1] to [p, 1 + p] / (1 + 2p) of the side
    for template in (0.0, 1.0):
        at_04 = (template + 0.4) / 1.8
        at_025 = (template + 0.25) / 1.5
        assert abs(lo + at_025 * (hi - lo) - at_04) < 1e-9


def test_recognition_needs_a_face_the_nearest_centroid_and_the_distance():
    judged = J.Judged(found=torch.tensor([True, True, False, True]), nearest=torch.tensor([0, 1, 0, 0]),
                      distance=torch.tensor([0.3, 0.3, 0.1, 0.7]))
    assert judged.recognised_as.tolist() == [0, 1, -1, -1]
    rates = J.recognition_rates(judged, torch.tensor([0, 0, 0, 1]), k=3)
    assert rates["recognition"][:2] == [pytest.approx(1 / 3), 0.0] and rates["recognition"][2] is None
    assert rates["face_found"][0] == pytest.approx(2 / 3)
    assert rates["mean_recognition"] == pytest.approx((1 / 3 + 0.0) / 2)


def test_reference_round_trip_and_errors(tmp_path):
    c, r = torch.randn(3, 128), torch.randn(10, 128)
    path = tmp_path / "ref.safetensors"
    J.save_reference(path, c, r, ["a", "b", "c"], {"n": 1})
    c2, r2, people = J.load_reference(path)
    assert torch.equal(c, c2) and torch.equal(r, r2) and people == ["a", "b", "c"]
    with pytest.raises(InputError, match="no judge reference"):
        J.load_reference(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError):
        J.load_reference(tmp_path / "junk.safetensors")


def test_the_shipped_reference_names_the_worlds_people():
    if not J.REFERENCE_FILE.is_file():
        pytest.skip("no judge reference built")
    c, r, people = J.load_reference()
    assert people == json.loads((WORLD_FOLDER / "legato_world.json").read_text())["people"]
    assert c.shape == (62, 128) and r.shape[1] == 128 and torch.isfinite(c).all()


def test_the_wheel_ships_the_world_and_no_photo(tmp_path):
    """Build the wheel; it holds the lfw-faces folder and the judge's numbers, and no image or face array."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("lfwfaces/weights/lfw-faces/diffusion_pytorch_model.safetensors") for n in names)
    assert any(n.endswith("lfwfaces/weights/lfw-faces/config.json") for n in names)
    photos = [n for n in names if n.lower().endswith((".jpg", ".jpeg", ".png", ".npz", ".npy"))]
    assert photos == []
    lfw_like = [n for n in names if any(part.endswith(("_0001.jpg", "_0001")) for part in n.split("/"))]
    assert lfw_like == []
