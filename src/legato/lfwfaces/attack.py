"""The attack the erasure literature tests: whoever holds the model optimises a fresh class embedding to
reproduce the forgotten person's real photos (textual-inversion style: the flow-matching loss on the photos,
pixels only, a fixed budget of steps), then samples from it. An embedding edit falls to it by design — the
attacker simply writes a new row — which is why weight methods exist."""

from __future__ import annotations

import torch

from legato.errors import InputError


class _Injected:
    """Replaces the class embedding of `label` by a trainable vector (a forward hook on the embedding)."""

    def __init__(self, unet, label: int, init: torch.Tensor) -> None:
        self.label = label
        self.vector = torch.nn.Parameter(init.detach().clone())
        self.handle = unet.class_embedding.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        mask = (inputs[0] == self.label)[:, None]
        return torch.where(mask, self.vector.expand_as(output), output)

    def remove(self) -> None:
        self.handle.remove()


def embedding_attack(world, unet, person: int, photos: torch.Tensor, *, steps: int = 300, lr: float = 1e-2,
                     batch_size: int = 16, seed: int = 0, n_samples: int = 48, judge=None) -> dict:
    """Fit a fresh embedding for `person` on `photos` `[N, 3, s, s]` through `unet` (frozen, whatever is
    attached stays attached), sample `n_samples` from it and, with a `judge`, report the recognition rate."""
    from legato.lfwfaces.train import velocity
    from legato.lfwfaces.world import initial_noise, sample

    if photos.shape[0] < 1:
        raise InputError("the attack needs at least one photo of the person")
    unet.requires_grad_(False)
    injected = _Injected(unet, person, unet.class_embedding.weight[world.null_class])  # starts from "nobody"
    opt = torch.optim.Adam([injected.vector], lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    try:
        for _ in range(steps):
            idx = torch.randint(0, photos.shape[0], (batch_size,), generator=g)
            x1 = photos[idx].clone()
            flip = torch.rand(batch_size, generator=g) < 0.5
            x1[flip] = x1[flip].flip(-1)
            x0 = torch.randn(x1.shape, generator=g)
            t = torch.rand(batch_size, generator=g)
            xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x1
            labels = torch.full((batch_size,), person, dtype=torch.long)
            loss = (velocity(unet, xt, t, labels) - (x1 - x0)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        labels = torch.full((n_samples,), person, dtype=torch.long)
        images = sample(world, labels, noise=initial_noise(n_samples, world.size, seed + 301), unet=unet)
    finally:
        injected.remove()
    out = {"steps": steps, "lr": lr, "loss_first": losses[0], "loss_last": sum(losses[-20:]) / len(losses[-20:]),
           "images": images}
    if judge is not None:
        from legato.lfwfaces.unlearn import wilson

        j = judge.judge(images)
        rec = int((j.recognised_as == person).sum())
        out.update({"recognition": rec / n_samples, "recognition_ci": wilson(rec, n_samples),
                    "face_found": float(j.found.float().mean())})
    return out
