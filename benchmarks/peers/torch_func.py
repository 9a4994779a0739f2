"""Peer (e): ``torch.func`` — ``functional_call`` + ``grad`` + ``vmap`` over tasks.

The per-task loss is a pure function of a parameter dict: the inner loop
applies ``torch.func.grad`` of the support loss (through
``torch.func.functional_call`` on the shared :class:`FlatModel`), the query
loss is evaluated at the adapted weights, and ``torch.func.vmap`` maps that
over the task axis. The mean is back-propagated with ordinary autograd into
the module's parameters (``torch.func.grad`` composes with it, which gives the
second-order terms); for first order the inner gradients are detached.

BatchNorm: this peer uses :func:`decomposed_batch_norm` (mean/var from
elementary ops). With the fused ``F.batch_norm`` kernel, vmapped
second-order meta-gradients come out wrong for every parameter *below* a BN
layer (the loss and first-order gradients are right): the batching rule of
the fused kernel's backward mishandles the gradient w.r.t. its input when
that backward is itself differentiated (reproduced on torch 2.13 CPU; a
long-standing open upstream report, functorch issue 534). The fused variant
is kept as :func:`build_fused_bn` for measurement and for the test that
documents the discrepancy; it is not registered as a peer.
"""

from __future__ import annotations

from torch import Tensor
from torch.func import functional_call, grad, vmap

from benchmarks.peers.torch_common import (
    TorchMetaStep,
    decomposed_batch_norm,
    fused_batch_norm,
    make_builder,
)

PEER = "torch_func"


class TorchFuncStep(TorchMetaStep):
    peer = PEER
    batch_norm = staticmethod(decomposed_batch_norm)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batched_task_loss = vmap(self._task_loss, in_dims=(None, 0, 0, 0, 0))

    def _task_loss(
        self, params: dict[str, Tensor], sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor
    ) -> Tensor:
        w = self.workload

        def support_loss(p: dict[str, Tensor]) -> Tensor:
            return self.loss(functional_call(self.model, p, (sx,)), sy)

        fast = params
        for _ in range(w.inner_steps):
            grads = grad(support_loss)(fast)
            if w.first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            fast = {k: fast[k] - w.inner_lr * grads[k] for k in fast}
        return self.loss(functional_call(self.model, fast, (qx,)), qy)

    def meta_backward(self) -> Tensor:
        params = dict(self.model.named_parameters())
        loss = self._batched_task_loss(params, *self.batch).mean()
        loss.backward()
        return loss.detach()


class TorchFuncFusedBNStep(TorchFuncStep):
    """:class:`TorchFuncStep` with the fused ``F.batch_norm`` (wrong 2nd-order grads)."""

    peer = "torch_func_fused_bn"
    batch_norm = staticmethod(fused_batch_norm)


build = make_builder(TorchFuncStep)
build_fused_bn = make_builder(TorchFuncFusedBNStep)
