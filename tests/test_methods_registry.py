"""The method registry, LoRA and SalUn: what each trains, how it saves and loads, and its dial."""

import copy

import pytest
import torch

from _unlearning_toy import train_toy
from legato.errors import CheckpointError, InputError
from legato.generators import load
from legato.ode import StrengthMap, fingerprint
from legato.unlearning import methods
from legato.unlearning.config import METHODS, UnlearnConfig
from legato.unlearning.methods import lora as lora_method
from legato.unlearning.methods.salun import saliency_masks


def _images(gen, seed=0, n=2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ws = gen.mapping(torch.randn(n, gen.z_dim, generator=g))
        return gen.synthesis(ws, gen.views(1).expand(n, -1))


def test_registry_lists_the_configs_methods_and_refuses_unknown_names():
    assert tuple(methods.REGISTRY) == METHODS
    assert {m.name for m in methods.REGISTRY.values() if m.dial} == {"legato", "residual", "lora"}
    with pytest.raises(InputError, match="unknown method"):
        methods.get("dreambooth")
    with pytest.raises(InputError, match="unknown method"):
        UnlearnConfig(method="dreambooth").validate()


def test_lora_starts_as_the_source_and_its_scale_dials_back_to_it():
    gen = load("toy")
    before = _images(gen)
    trainable = methods.build(gen, UnlearnConfig(method="lora", lora_rank=2))
    assert torch.equal(_images(gen), before)  # B starts at zero
    with torch.no_grad():
        for p in trainable.params:
            p.add_(0.05 * torch.randn_like(p))
    changed = _images(gen)
    assert (changed - before).abs().max() > 1e-3
    trainable.dial.strength = 0.0
    assert torch.equal(_images(gen), before)
    trainable.dial.strength = 0.5
    half = _images(gen)
    assert 0 < (half - before).abs().max() < (changed - before).abs().max()


def test_lora_rank_matches_legatos_parameter_count():
    gen = load("synthfaces")
    legato = lora_method.adapter_parameter_count(gen)
    trainable = methods.build(copy.deepcopy(gen), UnlearnConfig.for_generator(gen, method="lora"))
    assert abs(trainable.num_trainable() - legato) <= 0.2 * legato
    # only the adapter blocks' convolutions carry updates, and the base is frozen
    assert all("conv" in name for name in lora_method.target_modules(gen, gen.adapter_sites()))
    assert not any(p.requires_grad for p in gen.parameters())


def test_lora_bundle_round_trip_and_refusal_on_a_foreign_base(tmp_path):
    gen = load("toy")
    base_fp = fingerprint(gen)
    trainable = methods.build(gen, UnlearnConfig(method="lora", lora_rank=2))
    with torch.no_grad():
        for p in trainable.params:
            p.add_(0.05 * torch.randn_like(p))
    trainable.dial.strength_map = StrengthMap([0, 0.5, 1], [0, 0.2, 1])  # a calibrated run's map
    trainable.dial.strength = 0.7
    expected = _images(gen)
    trainable.save(tmp_path / "bundle", {"method": "lora"})
    fresh = load("toy")
    result = methods.load_result(tmp_path / "bundle", fresh)
    assert result.method == "lora" and result.dial.strength == pytest.approx(0.7)
    assert result.dial.strength_map == StrengthMap([0, 0.5, 1], [0, 0.2, 1])
    assert torch.allclose(_images(fresh), expected, atol=1e-6)
    result.dial.remove()
    assert fingerprint(fresh) == base_fp  # taking the updates off gives the base back
    other = load("toy")
    with torch.no_grad():
        other.synthesis_parameters()[0].add_(1.0)
    with pytest.raises(CheckpointError, match="other base weights"):
        methods.load_result(tmp_path / "bundle", other)


def test_saliency_masks_keep_the_largest_gradients_with_one_threshold():
    grads = {"a": torch.tensor([0.1, -5.0, 0.2, 3.0]), "b": torch.tensor([[4.0, -0.05], [0.3, 1.0]])}
    masks = saliency_masks(grads, 0.5)
    assert masks["a"].tolist() == [False, True, False, True]
    assert masks["b"].tolist() == [[True, False], [False, True]]
    with pytest.raises(ValueError):
        saliency_masks(grads, 0.0)


def test_salun_moves_only_the_salient_half_and_its_mask_survives_a_resume(tmp_path):
    config = UnlearnConfig(method="salun", iterations=3, lr=1e-2, seed=3, checkpoint_every=1, eval_every=100)
    trainable, _ = train_toy(config, tmp_path, latent_seed=5)
    base = load("toy")
    before = dict(base.named_parameters())
    moved = kept = 0
    for name, p in trainable._named.items():
        mask = trainable.buffers[name]
        delta = (p.detach() - before[name].detach()).abs()
        assert torch.all(delta[~mask] == 0), name  # outside the mask nothing moves
        moved += int((delta[mask] > 0).sum())
        kept += int(mask.sum())
    total = sum(p.numel() for p in trainable._named.values())
    assert kept == pytest.approx(total / 2, abs=2) and moved > kept // 2
    assert trainable.num_trainable() == kept
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("buffer::") for k in ckpt["trainable"])
    # a resumed run keeps the checkpointed mask (prepare is not called again)
    config.iterations = 4
    resumed, _ = train_toy(config, tmp_path, latent_seed=5, resume=True)
    for name, mask in trainable.buffers.items():
        assert torch.equal(resumed.buffers[name], mask), name
