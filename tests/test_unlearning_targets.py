"""The W+ geometry of the targets: whole-tensor norms, as the reference code takes them."""

import torch

from legato.unlearning.targets import adjacent_directions, ufo_target, ws_norm


def test_ufo_target_lies_d_away_over_the_whole_tensor():
    torch.manual_seed(0)
    w_avg = torch.randn(8)
    ws_u = w_avg + torch.randn(1, 5, 8) * torch.arange(1, 6).view(1, 5, 1)  # rows differ in size
    target = ufo_target(ws_u, w_avg, "extra", 3.0)
    assert torch.isclose(ws_norm(target - w_avg), torch.tensor(3.0)).all()
    # the rows keep their proportions: the direction is that of the whole tensor, not of each row
    rows = (target - w_avg).norm(dim=-1)[0]
    assert torch.allclose(rows / rows.sum(), (ws_u - w_avg).norm(dim=-1)[0] / (ws_u - w_avg).norm(dim=-1)[0].sum())
    assert torch.equal(ufo_target(ws_u, w_avg, "average", 3.0), w_avg.expand_as(ws_u))


def test_broadcast_latents_get_the_per_row_target_at_sqrt_rows_times_the_distance():
    w_avg, row = torch.zeros(8), torch.randn(8)
    ws_u = row.expand(1, 4, 8).clone()
    whole = ufo_target(ws_u, w_avg, "extra", 2.0 * 4 ** 0.5)
    assert torch.allclose(whole[0, 0], -2.0 * row / row.norm(), atol=1e-6)


def test_adjacent_offsets_have_whole_tensor_length_at_most_alpha():
    ws_u, ws_r = torch.randn(1, 3, 4), torch.randn(6, 3, 4)
    alphas = torch.rand(6, generator=torch.Generator().manual_seed(0)) * 0.5  # as trainer.draw_iteration
    delta = alphas.view(-1, 1, 1) * adjacent_directions(ws_u, ws_r)
    lengths = ws_norm(delta).flatten()
    assert (lengths <= 0.5 + 1e-6).all() and lengths.max() > 0
    cos = torch.nn.functional.cosine_similarity(delta.flatten(1), (ws_r - ws_u).flatten(1))
    assert torch.allclose(cos, torch.ones(6), atol=1e-5)


def test_projected_target_is_a_latent_of_the_mapping_network_near_the_ufo_point():
    from legato.generators import load

    gen = load("toy")
    with torch.no_grad():
        ws_u = gen.mapping(torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(2)))
        others = gen.mapping(torch.randn(200, gen.z_dim, generator=torch.Generator().manual_seed(3)))
    raw = ufo_target(ws_u, gen.w_avg, "extra", 2.0)
    projected = ufo_target(ws_u, gen.w_avg, "extra-projected", 2.0, generator=gen)
    assert projected.shape == raw.shape and not projected.requires_grad
    assert torch.allclose(projected, projected[:, :1].expand_as(projected))  # one w for every row, as mapping gives
    gap = ws_norm(projected - raw).item()
    assert gap < ws_norm(others - raw).flatten().min().item()  # nearer than 200 random people
