"""Peer (d): TorchOpt's functional optimiser API per task.

Uses the low-level functional API, ``torchopt.sgd(lr)`` as a
``GradientTransformation`` with ``update(..., inplace=False)`` and
``torchopt.apply_updates(..., inplace=False)``, on a tuple of fast-weight
tensors fed to the shared functional forward pass. We chose it over
``torchopt.MetaSGD`` because ``MetaSGD.step`` always differentiates with
``create_graph=True``, so it cannot express first-order MAML; the functional
API handles both orders with one code path (the inner gradient is taken with
``create_graph=not first_order``). The query loss is back-propagated per task
(scaled by ``1/T``), then Adam steps once.
"""

from __future__ import annotations

import torch
import torchopt
from torch import Tensor

from benchmarks.peers.torch_common import TorchMetaStep, make_builder

PEER = "torch_torchopt"


class TorchOptStep(TorchMetaStep):
    peer = PEER

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inner = torchopt.sgd(lr=self.workload.inner_lr)

    def meta_backward(self) -> Tensor:
        w = self.workload
        names = [name for name, _ in self.model.named_parameters()]
        initial = tuple(p for _, p in self.model.named_parameters())
        losses = []
        for t in range(self.num_tasks):
            sx, sy, qx, qy = (a[t] for a in self.batch)
            fast = initial
            state = self.inner.init(fast)
            for _ in range(w.inner_steps):
                support_loss = self.loss(self.forward(dict(zip(names, fast, strict=False)), sx), sy)
                grads = torch.autograd.grad(support_loss, fast, create_graph=not w.first_order)
                updates, state = self.inner.update(grads, state, params=fast, inplace=False)
                fast = torchopt.apply_updates(fast, updates, inplace=False)
            query_loss = self.loss(self.forward(dict(zip(names, fast, strict=False)), qx), qy)
            (query_loss / self.num_tasks).backward()
            losses.append(query_loss.detach())
        return torch.stack(losses).mean()


build = make_builder(TorchOptStep)
