"""The adapter core: identity at start, strength dial, solver steps, frozen base, parameter count."""

import copy

import pytest
import torch
from torch import nn

from legato.errors import InputError
from legato.ode import ODEAdapter, attach, trajectory_consistency


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 1)
    )


def randomise(adapter_set, std=0.2, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in adapter_set:
            for p in a.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * std)


def test_fresh_adapter_is_bit_identical():
    model = toy_model()
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    adapters = attach(model, ["0", "2"], hidden=16)
    assert torch.equal(model(x), before)
    adapters.detach()


@pytest.mark.parametrize("field", ["conv1x1", "context", "unet"])
def test_fresh_adapter_identity_for_every_field(field):
    adapter = ODEAdapter(8, hidden=16, field=field)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(adapter(x), x)


def test_context_field_sees_the_whole_image():
    """A pixel's velocity under the context field depends on pixels far from it (the 1×1 field's does not)."""
    from legato.ode.fields import ContextField, Conv1x1Field

    torch.manual_seed(0)
    x = torch.randn(1, 8, 6, 6)
    far = x.clone()
    far[..., 5, 5] += 3.0  # change one distant pixel
    for field, should_change in ((Conv1x1Field(8, 16), False), (ContextField(8, 16), True)):
        for p in field.parameters():
            torch.nn.init.normal_(p, std=0.3)
        changed = not torch.allclose(field(x)[..., 0, 0], field(far)[..., 0, 0])
        assert changed == should_change, type(field).__name__
    assert sum(p.numel() for p in ContextField(8, 16).parameters()) == 3 * 8 * 16 + 16 + 8


def test_strength_zero_equals_base_and_detach_restores():
    model = toy_model()
    x = torch.randn(2, 3, 8, 8)
    base_out = model(x)
    params_before = [id(p) for p in model.parameters()]
    flags_before = [p.requires_grad for p in model.parameters()]
    keys_before = list(model.state_dict())
    adapters = attach(model, ["0", "2"], hidden=16)
    assert list(model.state_dict()) == keys_before
    randomise(adapters)
    assert not torch.allclose(model(x), base_out)
    adapters.strength = 0.0
    assert torch.equal(model(x), base_out)
    adapters.strength = 1.0
    adapters.detach()
    assert torch.equal(model(x), base_out)
    assert [id(p) for p in model.parameters()] == params_before
    assert [p.requires_grad for p in model.parameters()] == flags_before


def test_strength_is_continuous_and_monotone_in_distance():
    model = toy_model()
    x = torch.randn(2, 3, 8, 8)
    base_out = model(x).detach()
    adapters = attach(model, ["2"], hidden=16)
    # a field that pushes every state the same way makes distance grow with integration time
    with torch.no_grad():
        a = adapters.adapter("2")
        a.field.inp.weight.zero_()
        a.field.inp.bias.fill_(1.0)
        a.field.out.weight.fill_(0.05)
    dists = []
    with torch.no_grad():
        for s in torch.linspace(0, 1, 21):
            adapters.strength = float(s)
            dists.append((model(x) - base_out).norm().item())
    assert dists[0] == 0.0
    assert all(b > a for a, b in zip(dists, dists[1:], strict=False)), dists
    jumps = [b - a for a, b in zip(dists, dists[1:], strict=False)]
    assert max(jumps) < 3 * (dists[-1] / 20)  # no jump: continuous in strength


@pytest.mark.parametrize(("method", "evals_per_step"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
@pytest.mark.parametrize(("step_size", "steps"), [(0.4, 4), (0.2, 8), (0.8, 2), (0.5, 4)])
def test_step_size_sets_number_of_solver_steps(method, evals_per_step, step_size, steps):
    adapter = ODEAdapter(4, hidden=8, t_end=1.6, step_size=step_size, method=method)
    adapter.reset_nfe()
    adapter(torch.randn(1, 4, 2, 2))
    assert adapter.last_num_steps == steps
    assert adapter.nfe == steps * evals_per_step


def test_half_strength_takes_half_the_steps():
    adapter = ODEAdapter(4, hidden=8, t_end=1.6, step_size=0.4)
    adapter.strength = 0.5
    adapter(torch.randn(1, 4, 2, 2))
    assert adapter.last_num_steps == 2


def test_only_adapters_get_gradients_and_base_is_byte_identical():
    model = toy_model()
    base_state = copy.deepcopy(model.state_dict())
    adapters = attach(model, ["0", "2"], hidden=16)
    randomise(adapters, std=0.05)
    opt = torch.optim.Adam(list(model.parameters()) + list(adapters.parameters()), lr=1e-2)
    before = [p.detach().clone() for p in adapters.parameters()]
    loss = model(torch.randn(2, 3, 8, 8)).pow(2).mean()
    loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in adapters.parameters())
    opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, base_state[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(before, adapters.parameters(), strict=True))


def test_parameter_count_matches_reference_formula():
    model = nn.Sequential(nn.Conv2d(3, 32, 1), nn.Conv2d(32, 64, 1))
    adapters = attach(model, ["0", "1"], hidden=256)
    expected = sum(2 * c * 256 + 256 + c for c in (32, 64))
    assert adapters.num_trainable() == expected


def test_trajectory_consistency_recorded_only_with_grad():
    model = toy_model()
    adapters = attach(model, ["0", "2"], hidden=16)
    randomise(adapters)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        model(x)
    assert trajectory_consistency(adapters).item() == 0.0
    model(x)
    tc = adapters.trajectory_consistency()
    assert tc.item() > 0 and tc.requires_grad
    # cleared after reading
    assert adapters.trajectory_consistency().item() == 0.0


def test_trajectory_consistency_is_mean_of_squared_step_differences():
    adapter = ODEAdapter(2, hidden=4, t_end=1.0, step_size=0.5)
    with torch.no_grad():
        adapter.field.inp.weight.zero_()
        adapter.field.inp.bias.fill_(1.0)
        adapter.field.out.weight.fill_(0.5)  # f(x) = 0.5 * 4 * 1 = 2 per channel, constant
        adapter.field.out.bias.zero_()
    adapter(torch.zeros(1, 2, 1, 1, requires_grad=True))
    # each Euler step moves by h·f = 0.5·2 = 1 in every channel → mean square difference 1
    assert trajectory_consistency([adapter]).item() == pytest.approx(1.0)


def test_reference_mode_reads_one_adapter_one_sample_and_counts_the_last_step_twice():
    # f(x) = k·x: Euler steps of h multiply x by (1 + h·k), so the step differences grow geometrically
    def linear(k):
        a = ODEAdapter(1, hidden=1, t_end=1.6, step_size=0.4)
        with torch.no_grad():
            a.field.inp.weight.fill_(1.0)
            a.field.inp.bias.zero_()
            a.field.out.weight.fill_(k)
            a.field.out.bias.zero_()
        return a

    a1, a2, a3 = linear(0.1), linear(0.5), linear(0.2)
    x = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).requires_grad_(True)  # two samples; the first is "w_u"
    for a in (a1, a2, a3):
        a(x)
        a(x)  # a second call (another chunk) is ignored by the reference mode
    # second-to-last adapter (a2), sample 0: x_k = 1.2^k, c_k = (0.2·1.2^(k−1))², k = 1..4
    c = [(0.2 * 1.2 ** (k - 1)) ** 2 for k in range(1, 5)]
    expected = 0.25 * (c[0] + c[1] + c[2]) + 1.25 * c[3]
    assert trajectory_consistency([a1, a2, a3], mode="reference").item() == pytest.approx(expected, rel=1e-5)
    assert not a1._terms and not a3._terms  # everything recorded is consumed
    for a in (a1, a2, a3):
        a(x)
    assert trajectory_consistency([a1, a2, a3], mode="reference", row=None).item() == 0.0
    # the default mode averages every adapter, call, step and sample
    for a in (a1, a2, a3):
        a(x)
    per = [torch.cat([t.flatten() for t in a._terms]).mean() for a in (a1, a2, a3)]
    assert trajectory_consistency([a1, a2, a3]).item() == pytest.approx(float(torch.stack(per).mean().detach()))
    with pytest.raises(InputError):
        trajectory_consistency([a1], mode="single")


def test_field_starts_as_the_reference_code_initialises_it():
    a = ODEAdapter(64, hidden=32)
    inp = a.field.inp
    assert inp.bias.abs().max() == 0 and a.field.out.weight.abs().max() == 0
    bound = (6 / 64) ** 0.5  # kaiming_uniform_(a=0) over fan_in 64
    assert inp.weight.abs().max() <= bound and inp.weight.abs().max() > 0.9 * bound


def test_bad_settings_are_refused():
    with pytest.raises(InputError):
        ODEAdapter(4, method="leapfrog")
    with pytest.raises(InputError):
        ODEAdapter(4, field="transformer")
    model = toy_model()
    with pytest.raises(InputError):
        attach(model, ["no.such.module"])
    adapters = attach(model, ["0"], hidden=8)
    with pytest.raises(InputError):
        adapters.strength = 1.5


def test_dopri5_runs_adaptively():
    adapter = ODEAdapter(4, hidden=8, method="dopri5")
    with torch.no_grad():
        adapter.field.out.weight.normal_(0, 0.1)
    x = torch.randn(1, 4, 3, 3)
    y = adapter(x)
    assert y.shape == x.shape and not torch.equal(x, y)
