"""Peer (f): ``learn2learn.algorithms.MAML`` per task (only if importable).

For each task ``learner = maml.clone()``, ``learner.adapt(support_loss)``
``inner_steps`` times, then the query loss (scaled by ``1/T``) is
back-propagated, as in learn2learn's own examples. ``first_order`` is passed
to ``MAML``. learn2learn does not build on every platform; the registry
reports this peer as skipped when ``import learn2learn`` fails.
"""

from __future__ import annotations

import learn2learn as l2l
import torch
from torch import Tensor

from benchmarks.peers.torch_common import TorchMetaStep, make_builder

PEER = "learn2learn_maml"


class Learn2LearnStep(TorchMetaStep):
    peer = PEER

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.maml = l2l.algorithms.MAML(
            self.model, lr=self.workload.inner_lr, first_order=self.workload.first_order
        )

    def meta_backward(self) -> Tensor:
        losses = []
        for t in range(self.num_tasks):
            sx, sy, qx, qy = (a[t] for a in self.batch)
            learner = self.maml.clone()
            for _ in range(self.workload.inner_steps):
                learner.adapt(self.loss(learner(sx), sy))
            query_loss = self.loss(learner(qx), qy)
            (query_loss / self.num_tasks).backward()
            losses.append(query_loss.detach())
        return torch.stack(losses).mean()


build = make_builder(Learn2LearnStep)
