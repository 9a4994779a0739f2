"""Shared PyTorch pieces: the model, layout converters and the step harness.

Every PyTorch peer uses the same functional forward pass
(:func:`conv4_forward` / :func:`mlp_forward`) on a ``dict`` of named tensors,
and the same :class:`FlatModel` wrapper when a library needs an
``nn.Module``. BatchNorm always uses the current batch's statistics
(``F.batch_norm(x, None, None, w, b, training=True)``: no running stats), so
every peer, PyTorch or JAX, computes the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.peers.data import (
    BN_EPS,
    NUM_CONV_BLOCKS,
    Params,
    TaskBatch,
    init_params,
    make_batch,
)
from benchmarks.peers.workloads import Workload

TorchParams = Mapping[str, Tensor]
ForwardFn = Callable[[TorchParams, Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
BatchNormFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; ``"gpu"`` means CUDA."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device({"gpu": "cuda"}.get(device, device))


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- layouts -----------------------------------------------------------------


def to_torch_layout(value: np.ndarray) -> np.ndarray:
    """Canonical (JAX) layout -> PyTorch layout: HWIO->OIHW, [in,out]->[out,in]."""
    if value.ndim == 4:
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    if value.ndim == 2:
        return np.ascontiguousarray(value.T)
    return value


def from_torch_layout(value: np.ndarray) -> np.ndarray:
    """PyTorch layout -> canonical (JAX) layout; inverse of :func:`to_torch_layout`."""
    if value.ndim == 4:
        return np.ascontiguousarray(value.transpose(2, 3, 1, 0))
    if value.ndim == 2:
        return np.ascontiguousarray(value.T)
    return value


def params_to_torch(params: Params, device: torch.device) -> dict[str, Tensor]:
    """Canonical NumPy params -> PyTorch-layout tensors on ``device``."""
    return {k: torch.from_numpy(to_torch_layout(v)).to(device) for k, v in params.items()}


def grads_to_numpy(named: Mapping[str, Tensor]) -> Params:
    """PyTorch-layout tensors -> canonical NumPy arrays."""
    return {k: from_torch_layout(v.detach().cpu().numpy()) for k, v in named.items()}


def batch_to_torch(batch: TaskBatch, device: torch.device) -> TaskBatch:
    """Canonical NumPy batch -> tensors on ``device`` (images become NCHW).

    Integer labels become ``int64`` (what ``F.cross_entropy`` expects).
    """

    def convert(a: np.ndarray) -> Tensor:
        if a.ndim == 5:  # [T, n, H, W, C] -> [T, n, C, H, W]
            a = np.ascontiguousarray(a.transpose(0, 1, 4, 2, 3))
        if np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.int64)
        return torch.from_numpy(a).to(device)

    return TaskBatch(*(convert(a) for a in batch))


# --- model -------------------------------------------------------------------


def fused_batch_norm(x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """Batch-statistics BatchNorm via PyTorch's fused kernel (no running stats)."""
    return F.batch_norm(x, None, None, scale, bias, training=True, eps=BN_EPS)


def decomposed_batch_norm(x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """The same function as :func:`fused_batch_norm`, from elementary ops.

    Needed under ``torch.func.vmap``: there the batching rule of the fused
    kernel's backward gives wrong second-order gradients w.r.t. the BN input
    (see ``torch_func.py``); elementary ops differentiate correctly.
    """
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = (x - mean).square().mean(dim=(0, 2, 3), keepdim=True)
    x = (x - mean) * torch.rsqrt(var + BN_EPS)
    return x * scale[:, None, None] + bias[:, None, None]


def conv4_embedding(
    p: TorchParams, x: Tensor, batch_norm: BatchNormFn = fused_batch_norm
) -> Tensor:
    """Conv4's four blocks on ``x: [n, C, H, W]``, flattened to ``[n, features]``
    (C, H, W order)."""
    for i in range(NUM_CONV_BLOCKS):
        x = F.conv2d(x, p[f"conv{i}_w"], p.get(f"conv{i}_b"), padding=1)
        x = batch_norm(x, p[f"bn{i}_scale"], p[f"bn{i}_bias"])
        x = F.max_pool2d(F.relu(x), 2)
    return x.flatten(1)


def conv4_forward(p: TorchParams, x: Tensor, batch_norm: BatchNormFn = fused_batch_norm) -> Tensor:
    """Conv4 on ``x: [n, C, H, W]`` with batch-statistics BatchNorm."""
    return F.linear(conv4_embedding(p, x, batch_norm), p["head_w"], p["head_b"])


def mlp_forward(p: TorchParams, x: Tensor) -> Tensor:
    """ReLU MLP on ``x: [n, in_dim]``."""
    num_layers = len(p) // 2
    for i in range(num_layers):
        x = F.linear(x, p[f"fc{i}_w"], p[f"fc{i}_b"])
        if i < num_layers - 1:
            x = F.relu(x)
    return x


def forward_fn(workload: Workload, batch_norm: BatchNormFn = fused_batch_norm) -> ForwardFn:
    """The functional forward pass for ``workload.model``."""
    if workload.model == "conv4":
        return lambda p, x: conv4_forward(p, x, batch_norm)
    return mlp_forward


def loss_fn(workload: Workload) -> LossFn:
    """Cross-entropy for classification, MSE for regression (both means)."""
    return F.cross_entropy if workload.is_classification else F.mse_loss


class FlatModel(nn.Module):
    """An ``nn.Module`` whose parameters are the flat canonical names.

    ``forward`` reads the parameters through ``getattr`` so that libraries
    that swap a module's parameters (``higher``, ``learn2learn``,
    ``torch.func.functional_call``) see their own fast weights.
    """

    def __init__(
        self, workload: Workload, tensors: Mapping[str, Tensor], forward: ForwardFn
    ) -> None:
        super().__init__()
        self._forward = forward
        self._names = tuple(tensors)
        for name, value in tensors.items():
            self.register_parameter(name, nn.Parameter(value.clone()))

    def forward(self, x: Tensor) -> Tensor:
        return self._forward({name: getattr(self, name) for name in self._names}, x)


# --- step harness ------------------------------------------------------------


class TorchMetaStep:
    """Common harness: owns the model, batch and Adam; subclasses do the maths.

    A subclass implements :meth:`meta_backward`, which must leave the
    meta-gradient of the *mean* query loss in ``self.model``'s ``.grad`` and
    return that mean loss (detached).
    """

    peer = "torch"
    #: BatchNorm implementation used by the model; a subclass may override it.
    batch_norm: BatchNormFn = staticmethod(fused_batch_norm)

    def __init__(
        self, workload: Workload, params: Params, batch: TaskBatch, device: torch.device
    ) -> None:
        self.workload = workload
        self.num_tasks = batch.num_tasks
        self.torch_device = device
        self.device = device.type
        self.forward = forward_fn(workload, type(self).batch_norm)
        self.model = FlatModel(workload, params_to_torch(params, device), self.forward)
        self.batch = batch_to_torch(batch, device)
        self.loss = loss_fn(workload)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=workload.meta_lr)
        self.first_losses: list = []  # meta-losses of the first calls, to check peers agree

    def meta_backward(self) -> Tensor:
        raise NotImplementedError

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.meta_backward()
        if len(self.first_losses) < 3:
            self.first_losses.append(loss)
        self.optimizer.step()
        synchronize(self.torch_device)

    def loss_and_grad(self) -> tuple[float, Params]:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.meta_backward()
        grads = {
            name: p.grad if p.grad is not None else torch.zeros_like(p)
            for name, p in self.model.named_parameters()
        }
        return float(loss), grads_to_numpy(grads)


def make_builder(step_cls: type[TorchMetaStep]):
    """A :class:`benchmarks.peers.base.Builder` for a :class:`TorchMetaStep` subclass."""

    def build(
        workload: Workload,
        batch_size: int,
        device: str | None = None,
        *,
        seed: int = 0,
        dtype: str = "float32",
        params: Params | None = None,
        batch: TaskBatch | None = None,
    ) -> TorchMetaStep:
        params = init_params(workload, seed, dtype) if params is None else params
        batch = make_batch(workload, batch_size, seed, dtype) if batch is None else batch
        return step_cls(workload, params, batch, resolve_device(device))

    build.__doc__ = f"Build the {step_cls.peer} meta-step (see benchmarks.peers.base.Builder)."
    return build
