"""The interface every peer implements."""

from __future__ import annotations

from typing import Protocol

from benchmarks.peers.data import Params, TaskBatch
from benchmarks.peers.workloads import Workload


class MetaStep(Protocol):
    """One peer's meta-training step on a fixed, pre-made batch of tasks.

    Calling it runs one full meta-step (inner loops, meta-gradient, Adam
    update) and synchronises with the device before returning, so wall-clock
    time around the call is the step time.
    """

    peer: str
    workload: Workload
    num_tasks: int
    device: str

    def __call__(self) -> None:
        """Run one meta-step and wait for it to finish."""
        ...

    def loss_and_grad(self) -> tuple[float, Params]:
        """Meta-loss and meta-gradient at the current parameters, no update.

        The gradient uses the canonical (JAX) names and layouts of
        :mod:`benchmarks.peers.data`, so peers can be compared directly.
        """
        ...


class Builder(Protocol):
    """``build(workload, batch_size, device=None, ...) -> MetaStep``.

    Args:
      workload: what to run.
      batch_size: tasks per meta-step.
      device: ``"cpu"``, ``"cuda"`` (``"gpu"`` for JAX is accepted too) or
        ``None`` for automatic (a GPU when one is visible).
      seed: seeds the canonical initial parameters and synthetic batch.
      dtype: ``"float32"`` or ``"float64"``.
      params: canonical initial parameters; overrides ``seed`` for params.
      batch: canonical task batch; overrides ``seed`` and ``batch_size``.
    """

    def __call__(
        self,
        workload: Workload,
        batch_size: int,
        device: str | None = None,
        *,
        seed: int = 0,
        dtype: str = "float32",
        params: Params | None = None,
        batch: TaskBatch | None = None,
    ) -> MetaStep: ...
