import torch

from legato.training_state import load_checkpoint, save_checkpoint, warmup_cosine


def test_checkpoint_restores_modules_optimiser_generators_and_rng(tmp_path):
    path = tmp_path / "x.ckpt"
    assert load_checkpoint(path, {}, {}) == (0, 0.0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    g = torch.Generator().manual_seed(5)
    torch.randn(3, generator=g)
    torch.manual_seed(11)
    save_checkpoint(path, {"net": net, "opt": opt}, {"g": g}, step=7, elapsed=12.5)
    expect_g, expect_global = torch.randn(2, generator=g), torch.randn(2)

    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-2)
    g2 = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    assert load_checkpoint(path, {"net": net2, "opt": opt2}, {"g": g2}) == (7, 12.5)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True))
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(torch.randn(2, generator=g2), expect_g)
    assert torch.equal(torch.randn(2), expect_global)


def test_warmup_then_cosine():
    assert warmup_cosine(1.0, 0, 10, 100) < warmup_cosine(1.0, 9, 10, 100)
    assert abs(warmup_cosine(1.0, 50, 10, 100) - 0.5) < 1e-9
    assert warmup_cosine(1.0, 99, 10, 100) < 0.01


def test_a_damaged_checkpoint_is_one_clear_error_and_no_code_runs(tmp_path):
    import pickle

    import pytest

    from legato.errors import CheckpointError
    from legato.training_state import read_state, write_state

    path = tmp_path / "c.pt"
    write_state(path, {"step": 3, "w": torch.ones(2)})
    data = path.read_bytes()
    assert read_state(path)["step"] == 3 and read_state(tmp_path / "none.pt") is None
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_state(path)

    marker = tmp_path / "ran.txt"

    class Evil:  # unpickled, it writes `marker`: the proof that code from the file ran
        def __init__(self, where):
            self.where = where

        def __reduce__(self):
            return (exec, (f"open({str(self.where)!r}, 'w').write('ran code from the file')",))

    # a bare pickle, and a checkpoint in torch's own format with the payload inside its dict (a reader that ran
    # code would fail on the first one after running it, and load the second without any error: the
    # refusal alone proves nothing, the marker does)
    bare, packed = tmp_path / "bare.pt", tmp_path / "packed.pt"
    bare.write_bytes(pickle.dumps(Evil(marker), protocol=2))
    torch.save({"step": 3, "w": torch.ones(2), "trap": Evil(marker)}, packed)
    for evil in (bare, packed):
        with pytest.raises(CheckpointError, match="cannot be read"):
            read_state(evil)
        assert not marker.exists(), f"{evil.name}: code from the checkpoint ran"
    # the payload is live: unpickled without the restriction, it does write its marker
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(Evil(control)))
    assert control.exists()
    write_state(path, {"a": 1})
    path.write_bytes(data)  # intact again
    assert read_state(path)["step"] == 3
