"""Micro-batching: chunked iterations give the full batch's losses, gradients and random draws."""

import json

import pytest
import torch

from _unlearning_toy import train_toy
from legato.errors import InputError
from legato.generators import load
from legato.unlearning.config import UnlearnConfig

ITERATIONS = 3


def _run(tmp_path, method: str, micro_batch, people: int = 1, **overrides):
    config = UnlearnConfig(method=method, iterations=ITERATIONS, lr=1e-2, hidden=8, seed=11, log_every=1,
                           eval_every=100, checkpoint_every=1, micro_batch=micro_batch, **overrides)
    config.validate()
    work = tmp_path / f"{method}-{micro_batch}-{people}"
    work.mkdir()
    trainable, result = train_toy(config, work, latent_seed=5, people=people)
    log = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    ckpt = torch.load(work / "checkpoint.pt", weights_only=True)
    return trainable.state_dict(), log, result.final_losses, ckpt


@pytest.mark.parametrize("method", ["legato", "guide"])
def test_micro_batches_match_the_whole_batch(tmp_path, method):
    params, log, final, ckpt = _run(tmp_path, method, None)
    assert len(log) == ITERATIONS
    # every term takes part (global and trajectory are zero before the first step)
    for key in ("local", "adjacency", "global") + (("trajectory",) if method == "legato" else ()):
        assert log[-1][key] > 0, key
    for micro_batch in (1, 2, 3):  # 5 rows: chunks 1+1+1+1+1, 2+2+1 (mixing adjacency and global), 3+2
        p, lg, fin, ck = _run(tmp_path, method, micro_batch)
        for k, ref in params.items():
            assert torch.allclose(p[k], ref, rtol=1e-4, atol=1e-5 * max(ref.abs().max().item(), 1.0)), \
                (micro_batch, k)
        for ref_rec, rec in zip(log, lg, strict=True):
            assert rec["step"] == ref_rec["step"]
            for key in ("total", "local", "adjacency", "global", "trajectory"):
                assert rec[key] == pytest.approx(ref_rec[key], rel=1e-4, abs=2e-6), (micro_batch, rec["step"], key)
        for key, value in final.items():
            assert fin[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (micro_batch, key)
        # the same random draws: both generators end every iteration in the same state
        assert torch.equal(ck["rng"], ckpt["rng"]) and torch.equal(ck["torch_rng"], ckpt["torch_rng"])


def test_micro_batches_match_the_whole_batch_with_several_people(tmp_path):
    # 3 people, 2 per step: rows 2 targets + 2 adjacency + 2 global; chunks of 1 and 4 split the targets'
    # local term and mix it with the adjacency term
    params, log, final, ckpt = _run(tmp_path, "legato", None, people=3, targets_per_step=2)
    for micro_batch in (1, 4):
        p, lg, fin, ck = _run(tmp_path, "legato", micro_batch, people=3, targets_per_step=2)
        for k, ref in params.items():
            assert torch.allclose(p[k], ref, rtol=1e-4, atol=1e-5 * max(ref.abs().max().item(), 1.0)), \
                (micro_batch, k)
        for ref_rec, rec in zip(log, lg, strict=True):
            for key in ("total", "local", "adjacency", "global", "trajectory"):
                assert rec[key] == pytest.approx(ref_rec[key], rel=1e-4, abs=2e-6), (micro_batch, rec["step"], key)
        assert torch.equal(ck["rng"], ckpt["rng"])


def test_micro_batches_match_the_whole_batch_with_the_gated_field(tmp_path):
    # the membership term is computed once per iteration from every chunk's latents, so chunks change
    # neither the gate's gradients nor the negatives it draws (the torch RNG ends each iteration alike)
    params, log, final, ckpt = _run(tmp_path, "legato", None, people=2, targets_per_step=2, field="gated")
    assert log[-1]["gate"] > 0
    for micro_batch in (1, 3):
        p, lg, fin, ck = _run(tmp_path, "legato", micro_batch, people=2, targets_per_step=2, field="gated")
        for k, ref in params.items():
            assert torch.allclose(p[k], ref, rtol=1e-4, atol=1e-5 * max(ref.abs().max().item(), 1.0)), \
                (micro_batch, k)
        for ref_rec, rec in zip(log, lg, strict=True):
            for key in ("total", "local", "adjacency", "global", "trajectory", "gate"):
                assert rec[key] == pytest.approx(ref_rec[key], rel=1e-4, abs=2e-6), (micro_batch, rec["step"], key)
        assert torch.equal(ck["torch_rng"], ckpt["torch_rng"])


def test_micro_batch_setting():
    with pytest.raises(InputError, match="micro-batch"):
        UnlearnConfig(micro_batch=0).validate()
    gen = load("toy")
    assert UnlearnConfig.for_generator(gen, micro_batch=None).micro_batch is None
    assert UnlearnConfig.for_generator(gen, micro_batch=2).to_dict()["micro_batch"] == 2
