"""The shared dials (`unlearning.methods.dials`) and the methods on plain models (`methods.modules`)."""

import pytest
import torch
from torch import nn

from legato.errors import InputError
from legato.unlearning.methods.dials import DialGroup, PeftLoraScale, WeightInterpolation
from legato.unlearning.methods.modules import full_finetune, peft_lora


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_weight_interpolation_runs_from_source_to_result_linearly():
    model = _model()
    trainable = full_finetune(model, "finetune", copy_model=True)
    with torch.no_grad():
        for p in trainable.params:
            p.add_(1.0)
    trainable.dial.capture()
    x = torch.randn(5, 4)
    source_out, tuned_out = model(x), trainable.unlearned(x)
    assert not torch.allclose(source_out, tuned_out)
    trainable.dial.strength = 0.0
    assert torch.allclose(trainable.unlearned(x), source_out, atol=1e-6)
    trainable.dial.strength = 0.5
    first = trainable.unlearned[0].weight
    assert torch.allclose(first, model[0].weight + 0.5, atol=1e-6)
    trainable.dial.enabled = False
    assert torch.allclose(trainable.unlearned(x), source_out, atol=1e-6)
    trainable.dial.enabled = True
    trainable.dial.strength = 1.0
    assert torch.allclose(trainable.unlearned(x), tuned_out, atol=1e-6)
    with pytest.raises(InputError, match="strength must be in"):
        trainable.dial.strength = 1.5


def test_of_changed_interpolates_only_the_tensors_that_differ():
    model = _model()
    source = {k: v.detach().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        model[2].bias.fill_(3.0)
    dial = WeightInterpolation.of_changed(model, source)
    assert list(dial.params) == ["2.bias"]
    dial.strength = 0.25
    assert torch.allclose(model[2].bias, source["2.bias"] + 0.25 * (3.0 - source["2.bias"]))
    assert torch.equal(model[0].weight, source["0.weight"])


def test_peft_lora_scale_zero_is_the_source_and_the_dial_moves_the_output():
    model = _model()
    x = torch.randn(6, 4)
    before = model(x).detach()
    trainable = peft_lora(model, ["2"], rank=2)  # the last layer: the output is linear in its scale
    assert all("lora_" in n for n in trainable._named) and trainable.params
    with torch.no_grad():
        for p in trainable.params:
            p.normal_()
    full = model(x).detach()
    assert not torch.allclose(full, before)
    trainable.dial.strength = 0.0
    assert torch.allclose(model(x), before, atol=1e-6)
    trainable.dial.strength = 0.5
    half = model(x).detach()
    assert torch.allclose(half - before, 0.5 * (full - before), atol=1e-5)  # the update is linear in the scale
    trainable.dial.strength = 1.0
    trainable.dial.enabled = False
    assert torch.allclose(model(x), before, atol=1e-6)


def test_dial_group_turns_every_dial():
    a, b = _model(0), _model(1)
    da = WeightInterpolation(dict(a.named_parameters()), {k: torch.zeros_like(v) for k, v in a.named_parameters()})
    db = WeightInterpolation(dict(b.named_parameters()), {k: torch.zeros_like(v) for k, v in b.named_parameters()})
    group = DialGroup([da, db])
    group.strength = 0.0
    assert all(float(p.detach().abs().sum()) == 0 for p in [*a.parameters(), *b.parameters()])
    assert group.strength == 0.0 and da.strength == db.strength == 0.0
    with pytest.raises(ValueError):
        DialGroup([])
    with pytest.raises(ValueError, match="LoRA"):
        PeftLoraScale(a)


def test_peft_lora_folder_round_trip_and_refusals(tmp_path):
    import copy
    import json
    from pathlib import Path

    from legato.errors import CheckpointError
    from legato.unlearning.methods import load_result
    from legato.unlearning.methods.lora import holds as holds_gan_lora
    from legato.unlearning.methods.modules import holds_peft_lora, load_peft_lora

    model = _model()
    base = copy.deepcopy(model)
    trainable = peft_lora(model, ["0", "2"], rank=2)
    with torch.no_grad():
        for p in trainable.params:
            p.normal_()
    trainable.save(tmp_path / "lora", {"person": "x"})
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["0", "2"] and config["metadata"] == {"person": "x"}
    assert holds_peft_lora(tmp_path / "lora") and not holds_gan_lora(Path(tmp_path / "lora"))
    fresh = copy.deepcopy(base)
    dial = load_peft_lora(tmp_path / "lora", fresh)
    x = torch.randn(4, 4)
    assert torch.allclose(fresh(x), model(x), atol=1e-6)
    dial.strength = 0.0
    assert torch.allclose(fresh(x), base(x), atol=1e-6)
    other = _model(seed=1)
    with pytest.raises(CheckpointError, match="other base weights"):
        load_peft_lora(tmp_path / "lora", other)
    with pytest.raises(CheckpointError):  # a GAN loader does not take it for its own
        load_result(tmp_path / "lora", copy.deepcopy(base))
