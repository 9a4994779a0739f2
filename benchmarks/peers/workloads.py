"""Meta-training workloads shared by every peer implementation.

A :class:`Workload` pins down everything that defines one MAML meta-step:
the model, the task shapes, the inner loop and the meta-optimiser. Every
peer reads the same ``Workload`` so that their timings compare like with
like.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["mlp", "conv4"]


@dataclass(frozen=True)
class Workload:
    """One MAML meta-training step, described by value.

    Attributes:
      name: registry key, e.g. ``"omniglot_5w1s"``.
      model: ``"mlp"`` (regression) or ``"conv4"`` (classification).
      input_shape: shape of one example: ``(H, W, C)`` for images (the
        canonical layout is channels-last), ``(in_dim,)`` for the MLP.
      n_way: classes per task; for regression the output dimension.
      k_shot: support examples per class (regression: support examples).
      n_query: query examples per class (regression: query examples).
      width: conv filters (conv4) or hidden units (mlp).
      inner_lr: inner-loop SGD step size.
      inner_steps: inner-loop SGD steps per task.
      first_order: drop second-order terms (FOMAML) when true.
      meta_lr: Adam learning rate of the outer loop.
      meta_batch: default number of tasks per meta-step.
      hidden_layers: number of hidden layers (mlp only).
    """

    name: str
    model: ModelKind
    input_shape: tuple[int, ...]
    n_way: int
    k_shot: int
    n_query: int
    width: int
    inner_lr: float
    inner_steps: int = 1
    first_order: bool = False
    meta_lr: float = 1e-3
    meta_batch: int = 32
    hidden_layers: int = 2

    @property
    def is_classification(self) -> bool:
        """True for the conv4 N-way tasks, false for regression."""
        return self.model == "conv4"

    @property
    def support_size(self) -> int:
        """Examples in one task's support set."""
        return self.n_way * self.k_shot if self.is_classification else self.k_shot

    @property
    def query_size(self) -> int:
        """Examples in one task's query set."""
        return self.n_way * self.n_query if self.is_classification else self.n_query

    @property
    def output_dim(self) -> int:
        """Width of the model's output (logits or regression targets)."""
        return self.n_way

    @property
    def feature_dim(self) -> int:
        """Input width of the conv4 linear head (``width * s * s``)."""
        if self.model != "conv4":
            raise ValueError("feature_dim is defined for conv4 only")
        side = self.input_shape[0]
        for _ in range(4):
            side //= 2  # 2x2 max-pool, floor (VALID) semantics
        return self.width * side * side

    def replace(self, **changes: object) -> Workload:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """Human-readable one-line description."""
        order = "1st" if self.first_order else "2nd"
        return f"{self.name} steps={self.inner_steps} {order}-order"


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="sinusoid",
            model="mlp",
            input_shape=(1,),
            n_way=1,
            k_shot=10,
            n_query=10,
            width=40,
            inner_lr=0.01,
            meta_batch=25,
        ),
        Workload(
            name="omniglot_5w1s",
            model="conv4",
            input_shape=(28, 28, 1),
            n_way=5,
            k_shot=1,
            n_query=15,
            width=64,
            inner_lr=0.4,
        ),
        Workload(
            name="omniglot_20w1s",
            model="conv4",
            input_shape=(28, 28, 1),
            n_way=20,
            k_shot=1,
            n_query=15,
            width=64,
            inner_lr=0.1,
            meta_batch=16,
        ),
        Workload(
            name="miniimagenet_5w1s",
            model="conv4",
            input_shape=(84, 84, 3),
            n_way=5,
            k_shot=1,
            n_query=15,
            width=32,
            inner_lr=0.01,
            meta_batch=4,
        ),
    )
}


def get_workload(
    name: str,
    *,
    inner_steps: int | None = None,
    first_order: bool | None = None,
) -> Workload:
    """Look up a registered workload, optionally overriding the inner loop."""
    try:
        workload = WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; known: {sorted(WORKLOADS)}") from None
    if inner_steps is not None:
        workload = workload.replace(inner_steps=inner_steps)
    if first_order is not None:
        workload = workload.replace(first_order=first_order)
    return workload
