"""Framework-neutral parameters and task batches (NumPy only).

Every peer starts from the same canonical NumPy values and converts them to
its own layout, so peers can be checked against each other numerically.

Canonical conventions (the JAX layout):
  * images are channels-last, ``[T, n, H, W, C]``;
  * conv kernels are ``HWIO``;
  * dense kernels are ``[in, out]``;
  * the conv4 feature map is flattened in ``C, H, W`` order before the head
    (PyTorch's ``flatten`` order), so one head matrix serves every peer.

Parameter names are flat strings, valid as ``nn.Module`` attribute names:
``conv{i}_w``, ``conv{i}_b``, ``bn{i}_scale``, ``bn{i}_bias``, ``head_w``,
``head_b`` for conv4 and ``fc{i}_w``, ``fc{i}_b`` for the MLP.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from benchmarks.peers.workloads import Workload

Params = dict[str, np.ndarray]

NUM_CONV_BLOCKS = 4
BN_EPS = 1e-5


class TaskBatch(NamedTuple):
    """A meta-batch of ``T`` tasks as NumPy arrays (canonical layout).

    Attributes:
      support_x: ``[T, n_support, *input_shape]``.
      support_y: ``[T, n_support]`` int labels, or ``[T, n_support, out]``.
      query_x: ``[T, n_query, *input_shape]``.
      query_y: ``[T, n_query]`` int labels, or ``[T, n_query, out]``.
    """

    support_x: np.ndarray
    support_y: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray

    @property
    def num_tasks(self) -> int:
        return int(self.support_x.shape[0])


def param_shapes(workload: Workload) -> dict[str, tuple[int, ...]]:
    """Canonical shapes of every parameter, in a fixed order."""
    shapes: dict[str, tuple[int, ...]] = {}
    if workload.model == "conv4":
        channels = workload.input_shape[-1]
        for i in range(NUM_CONV_BLOCKS):
            shapes[f"conv{i}_w"] = (3, 3, channels, workload.width)
            shapes[f"conv{i}_b"] = (workload.width,)
            shapes[f"bn{i}_scale"] = (workload.width,)
            shapes[f"bn{i}_bias"] = (workload.width,)
            channels = workload.width
        shapes["head_w"] = (workload.feature_dim, workload.output_dim)
        shapes["head_b"] = (workload.output_dim,)
    elif workload.model == "mlp":
        widths = [workload.input_shape[0]]
        widths += [workload.width] * workload.hidden_layers
        widths += [workload.output_dim]
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=False)):
            shapes[f"fc{i}_w"] = (fan_in, fan_out)
            shapes[f"fc{i}_b"] = (fan_out,)
    else:
        raise ValueError(f"unknown model {workload.model!r}")
    return shapes


def init_params(workload: Workload, seed: int = 0, dtype: str = "float32") -> Params:
    """Random initial parameters (uniform fan-in scaling, like PyTorch's default).

    BatchNorm scales start at 1 and shifts at 0.
    """
    rng = np.random.default_rng(seed)
    params: Params = {}
    for name, shape in param_shapes(workload).items():
        if name.endswith("_scale"):
            value = np.ones(shape)
        elif name.startswith("bn"):
            value = np.zeros(shape)
        else:
            kernel_shape = shape if name.endswith("_w") else None
            if kernel_shape is None:  # a bias: scale by its kernel's fan-in
                kernel_shape = param_shapes(workload)[name[:-2] + "_w"]
            fan_in = int(np.prod(kernel_shape[:-1]))
            bound = 1.0 / np.sqrt(fan_in)
            value = rng.uniform(-bound, bound, size=shape)
        params[name] = value.astype(dtype)
    return params


def make_batch(
    workload: Workload, num_tasks: int, seed: int = 0, dtype: str = "float32"
) -> TaskBatch:
    """Synthetic tasks of the right shapes (throughput only, not learnable data).

    Classification: Gaussian-noise images, labels ``0..N-1`` arranged N-way
    (``k_shot`` support and ``n_query`` query examples of each class).
    Regression: sinusoids ``A sin(x - phase)`` on ``x ~ U[-5, 5]``.
    """
    rng = np.random.default_rng(seed + 1_000_003)
    n_s, n_q = workload.support_size, workload.query_size
    if workload.is_classification:
        sx = rng.standard_normal((num_tasks, n_s, *workload.input_shape))
        qx = rng.standard_normal((num_tasks, n_q, *workload.input_shape))
        classes = np.arange(workload.n_way)
        sy = np.tile(np.repeat(classes, workload.k_shot), (num_tasks, 1))
        qy = np.tile(np.repeat(classes, workload.n_query), (num_tasks, 1))
        return TaskBatch(
            sx.astype(dtype), sy.astype(np.int32), qx.astype(dtype), qy.astype(np.int32)
        )
    amplitude = rng.uniform(0.1, 5.0, size=(num_tasks, 1, 1))
    phase = rng.uniform(0.0, np.pi, size=(num_tasks, 1, 1))
    sx = rng.uniform(-5.0, 5.0, size=(num_tasks, n_s, *workload.input_shape))
    qx = rng.uniform(-5.0, 5.0, size=(num_tasks, n_q, *workload.input_shape))
    sy = amplitude * np.sin(sx - phase)
    qy = amplitude * np.sin(qx - phase)
    return TaskBatch(*(a.astype(dtype) for a in (sx, sy, qx, qy)))
