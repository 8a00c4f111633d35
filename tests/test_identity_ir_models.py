"""ArcFace IR-SE50 / CurricularFace IR-101: reference key layout, loading by name, safe and clear errors."""

import os

import pytest
import torch

from legato.errors import CheckpointError, InputError
from legato.identity import load
from legato.identity.arcface import IR101Model, IRSE50Model


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    model = IRSE50Model.random(seed=1)
    path = tmp_path_factory.mktemp("w") / "model_ir_se50.pth"
    torch.save(model.network.state_dict(), path)
    return model, path


@pytest.fixture(scope="module")
def curricular_file(tmp_path_factory):
    model = IR101Model.random(seed=2)
    path = tmp_path_factory.mktemp("w") / "CurricularFace_Backbone.pth"
    torch.save(model.network.state_dict(), path)
    return model, path


def test_ir_se50_state_dict_has_the_reference_names_and_shapes(arcface_file):
    state = arcface_file[0].network.state_dict()
    assert state["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert state["input_layer.2.weight"].shape == (64,)  # PReLU
    body_units = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
    assert body_units == set(range(24))  # 3 + 4 + 14 + 3 units
    assert state["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)  # first unit of stage 2
    assert "body.4.shortcut_layer.0.weight" not in state  # same width: a parameter-free max-pool
    assert state["body.23.res_layer.5.fc1.weight"].shape == (32, 512, 1, 1)  # SE, reduction 16
    assert state["body.23.res_layer.5.fc2.weight"].shape == (512, 32, 1, 1)
    assert state["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert state["output_layer.4.weight"].shape == (512,)  # affine BatchNorm1d
    assert (
        sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
        == 43_797_696
    )


def test_ir_101_state_dict_has_the_reference_names_and_shapes(curricular_file):
    state = curricular_file[0].network.state_dict()
    body_units = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
    assert body_units == set(range(49))  # 3 + 13 + 30 + 3 units
    assert not any(".fc1." in k for k in state)  # plain IR units, no SE
    assert state["body.16.shortcut_layer.0.weight"].shape == (256, 128, 1, 1)
    assert "output_layer.4.weight" not in state and "output_layer.4.running_mean" in state  # affine=False


def test_arcface_loads_by_name_and_embeds_like_the_original(arcface_file):
    original, path = arcface_file
    loaded = load(f"arcface:{path}")
    assert isinstance(loaded, IRSE50Model) and loaded.differentiable and loaded.dim == 512
    crops = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = original.embed_crops(crops), loaded.embed_crops(crops)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a.norm(dim=1), torch.ones(1), atol=1e-5)


def test_curricularface_loads_by_name_and_embeds_unit_vectors(curricular_file):
    original, path = curricular_file
    model = load(f"curricularface:{path}")
    assert isinstance(model, IR101Model) and model.dim == 512
    images = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        emb = model.embed(images)  # FFHQ-framed image → fixed alignment → IR-101
    assert emb.shape == (1, 512)
    assert torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-5)
    theirs = original.network.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in model.network.state_dict().items())


def test_embedding_is_differentiable_with_respect_to_the_image(arcface_file):
    model = arcface_file[0]
    images = (torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(4)) * 2 - 1).requires_grad_()
    emb = model.embed(images)
    emb[0, :8].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in model.network.parameters())  # the network stays frozen


def test_loading_the_other_network_file_is_a_clear_checkpoint_error(curricular_file):
    with pytest.raises(CheckpointError, match=r"does not fit ArcFace IR-SE50.*IR backbone \(depth 100\)"):
        load(f"arcface:{curricular_file[1]}")


def test_an_arcface_file_given_as_curricularface_is_named_as_such(arcface_file):
    expected = r"does not fit CurricularFace IR-101.*IR-SE backbone \(depth 50\)"
    with pytest.raises(CheckpointError, match=expected):
        load(f"curricularface:{arcface_file[1]}")


def test_old_checkpoints_without_batchnorm_counters_load(tmp_path, arcface_file):
    state = {k: v for k, v in arcface_file[0].network.state_dict().items() if "num_batches" not in k}
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "old.pth")
    loaded = IRSE50Model.from_file(tmp_path / "old.pth")
    assert torch.equal(loaded.network.state_dict()["output_layer.3.weight"], state["output_layer.3.weight"])


def test_missing_keys_are_named(tmp_path, arcface_file):
    state = arcface_file[0].network.state_dict()
    del state["body.5.res_layer.1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"1 missing \(e.g. body\.5\.res_layer\.1\.weight\)"):
        IRSE50Model.from_file(tmp_path / "partial.pth")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"input_layer.0.weight": torch.zeros(1), "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to load.*system"):
        load(f"arcface:{path}")


def test_not_a_checkpoint_and_wrong_specs(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load(f"arcface:{tmp_path / 'junk.pth'}")
    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(3)}, good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load(f"arcface:{tmp_path / 'cut.pth'}")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load(f"curricularface:{tmp_path / 'list.pth'}")
    with pytest.raises(InputError, match="no such weights file"):
        load(f"arcface:{tmp_path / 'absent.pth'}")
    with pytest.raises(InputError, match="needs a weights file"):
        load("arcface")
    with pytest.raises(InputError, match="unknown identity model"):
        load("facenet")
