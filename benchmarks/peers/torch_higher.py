"""Peer (c): ``higher.innerloop_ctx`` per task.

For each task a differentiable copy of the model is unrolled with
``higher.innerloop_ctx(model, SGD(lr=inner_lr), copy_initial_weights=False,
track_higher_grads=not first_order)``; the query loss (scaled by ``1/T``) is
back-propagated per task.

First order: with ``track_higher_grads=False`` higher detaches the fast
weights after every step, so ``backward`` would not reach the initial
parameters; the FOMAML gradient (the query-loss gradient at the adapted
weights) is therefore taken w.r.t. the final fast weights and added to the
initial parameters' ``.grad`` by hand, the usual way to do FOMAML with higher.
"""

from __future__ import annotations

import higher
import torch
from torch import Tensor

from benchmarks.peers.torch_common import TorchMetaStep, make_builder

PEER = "torch_higher"


class HigherStep(TorchMetaStep):
    peer = PEER

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inner_optimizer = torch.optim.SGD(self.model.parameters(), lr=self.workload.inner_lr)

    def meta_backward(self) -> Tensor:
        w = self.workload
        params = list(self.model.parameters())
        losses = []
        for t in range(self.num_tasks):
            sx, sy, qx, qy = (a[t] for a in self.batch)
            with higher.innerloop_ctx(
                self.model,
                self.inner_optimizer,
                copy_initial_weights=False,
                track_higher_grads=not w.first_order,
            ) as (fmodel, diffopt):
                for _ in range(w.inner_steps):
                    diffopt.step(self.loss(fmodel(sx), sy))
                query_loss = self.loss(fmodel(qx), qy)
                scaled = query_loss / self.num_tasks
                if w.first_order:
                    grads = torch.autograd.grad(scaled, list(fmodel.parameters()))
                    for p, g in zip(params, grads, strict=False):
                        p.grad = g if p.grad is None else p.grad + g
                else:
                    scaled.backward()
            losses.append(query_loss.detach())
        return torch.stack(losses).mean()


build = make_builder(HigherStep)
