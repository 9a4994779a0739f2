"""Peer (b): a per-task PyTorch loop with ``torch.autograd.grad``.

The mechanism of learn2learn's MAML, written out by hand: for each task,
``grads = autograd.grad(support_loss, fast, create_graph=not first_order)``,
``fast = fast - lr * grads`` (repeated ``inner_steps`` times), then the query
loss of that task is back-propagated into the initial parameters (scaled by
``1/T`` so the accumulated ``.grad`` is that of the mean). One ``backward``
per task keeps only one task's graph alive at a time, as learn2learn's
examples do. Adam then steps once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmarks.peers.torch_common import TorchMetaStep, make_builder

PEER = "torch_loop"


class TorchLoopStep(TorchMetaStep):
    peer = PEER

    def meta_backward(self) -> Tensor:
        w = self.workload
        names = [name for name, _ in self.model.named_parameters()]
        initial = [p for _, p in self.model.named_parameters()]
        losses = []
        for t in range(self.num_tasks):
            sx, sy, qx, qy = (a[t] for a in self.batch)
            fast = initial
            for _ in range(w.inner_steps):
                support_loss = self.loss(self.forward(dict(zip(names, fast, strict=False)), sx), sy)
                grads = torch.autograd.grad(support_loss, fast, create_graph=not w.first_order)
                fast = [p - w.inner_lr * g for p, g in zip(fast, grads, strict=False)]
            query_loss = self.loss(self.forward(dict(zip(names, fast, strict=False)), qx), qy)
            (query_loss / self.num_tasks).backward()
            losses.append(query_loss.detach())
        return torch.stack(losses).mean()


build = make_builder(TorchLoopStep)
