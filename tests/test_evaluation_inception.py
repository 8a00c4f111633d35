"""`--inception PATH`: the FID Inception-v3 is read from a plain state dict, safely, and refuses other files."""

import pytest
import torch

from legato.errors import CheckpointError, InputError
from legato.evaluation.fid import resolve_features
from legato.evaluation.inception import FIDInception, load_fid_inception


def test_missing_or_foreign_weights_are_refused(tmp_path):
    with pytest.raises(InputError, match="do not exist"):
        load_fid_inception(tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_fid_inception(tmp_path / "junk.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not the FID Inception"):
        load_fid_inception(tmp_path / "other.pth")


@pytest.mark.slow
def test_a_state_dict_round_trips_into_2048_features(tmp_path):
    torch.manual_seed(0)
    net = FIDInception()
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    for k, v in state.items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
    torch.save(state, tmp_path / "inception.pth")
    extractor = resolve_features(tmp_path / "inception.pth", identity_model=None)
    assert extractor.name == "inception-v3-fid"
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = extractor(images)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64
    assert torch.allclose(feats, net.eval()(images).double(), atol=1e-5)
    state["Mixed_7c.branch_pool.conv.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_fid_inception(tmp_path / "bad.pth")
