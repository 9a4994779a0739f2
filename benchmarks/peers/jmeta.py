"""jmeta's own meta-step, behind the peers' interface.

The same MAML step as every peer (see :mod:`benchmarks.peers.workloads`),
written with the public API: ``jmeta.models.conv4``/``mlp``, ``jmeta.maml``,
``jmeta.meta_train_step`` with ``optax.flatten(optax.adam(...))`` (as
``jmeta train`` builds it) and ``jmeta.jit_step`` (state buffers donated).
Options select what the benchmark compares:

* ``conv_impl``: ``"xla"`` (``lax.conv``: under ``vmap`` with per-task weights a
  grouped convolution) or ``"im2col"`` (a batched matrix product);
* ``precision``: ``"float32"`` or ``"bfloat16"`` (bf16 activations and
  convolution inputs, float32 parameters, statistics, losses and gradients);
* ``remat``: checkpoint each inner step;
* ``unroll``: inner steps per iteration of the inner ``lax.scan``;
* ``chunk_size``: run the meta-batch as sequential chunks of this many tasks.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jmeta
from benchmarks.peers.data import NUM_CONV_BLOCKS, Params, TaskBatch, init_params, make_batch
from benchmarks.peers.plain_jax import resolve_device
from benchmarks.peers.timing import footprint_bytes
from benchmarks.peers.workloads import Workload

PEER = "jmeta"
DEFAULT_OPTIONS = {
    "conv_impl": "im2col",
    "precision": "float32",
    "remat": False,
    "unroll": 1,
    "chunk_size": None,
}


def model_for(workload: Workload, conv_impl: str, precision: str, param_dtype: str) -> jmeta.Model:
    compute = {"float32": None, "bfloat16": jnp.bfloat16}[precision]
    if workload.model == "conv4":
        return jmeta.models.conv4(
            workload.n_way,
            channels=workload.width,
            input_shape=workload.input_shape,
            conv_impl=conv_impl,
            dtype=compute,
            param_dtype=param_dtype,
        )
    sizes = (workload.input_shape[0],) + (workload.width,) * workload.hidden_layers
    return jmeta.models.mlp(sizes + (workload.output_dim,), dtype=compute, param_dtype=param_dtype)


def to_jmeta(workload: Workload, params: Params) -> dict[str, Any]:
    """Canonical peer parameters -> jmeta's nested dict.

    Conv biases are dropped: jmeta's Conv4 has none before BatchNorm, whose mean
    subtraction cancels them exactly. The head's rows are reordered from the
    canonical (C, H, W) flattening to jmeta's (H, W, C).
    """
    p = {k: jnp.asarray(v) for k, v in params.items()}
    if workload.model == "mlp":
        n = len(p) // 2
        names = [f"layer{i}" for i in range(n - 1)] + ["head"]
        return {
            name: {"kernel": p[f"fc{i}_w"], "bias": p[f"fc{i}_b"]} for i, name in enumerate(names)
        }
    out: dict[str, Any] = {}
    for i in range(NUM_CONV_BLOCKS):
        out[f"conv{i}"] = {"kernel": p[f"conv{i}_w"]}
        out[f"bn{i}"] = {"scale": p[f"bn{i}_scale"], "bias": p[f"bn{i}_bias"]}
    side, c = _final_side(workload), workload.width
    head = p["head_w"].reshape(c, side, side, -1).transpose(1, 2, 0, 3).reshape(side * side * c, -1)
    out["head"] = {"kernel": head, "bias": p["head_b"]}
    return out


def from_jmeta(workload: Workload, grads: dict[str, Any]) -> Params:
    """Inverse of :func:`to_jmeta` for gradients (conv-bias gradients are zero)."""
    g = jax.tree.map(np.asarray, grads)
    if workload.model == "mlp":
        names = sorted(k for k in g if k != "head") + ["head"]
        flat: Params = {}
        for i, name in enumerate(names):
            flat[f"fc{i}_w"], flat[f"fc{i}_b"] = g[name]["kernel"], g[name]["bias"]
        return flat
    flat = {}
    for i in range(NUM_CONV_BLOCKS):
        flat[f"conv{i}_w"] = g[f"conv{i}"]["kernel"]
        flat[f"conv{i}_b"] = np.zeros(workload.width, g[f"conv{i}"]["kernel"].dtype)
        flat[f"bn{i}_scale"], flat[f"bn{i}_bias"] = g[f"bn{i}"]["scale"], g[f"bn{i}"]["bias"]
    side, c = _final_side(workload), workload.width
    head = g["head"]["kernel"].reshape(side, side, c, -1).transpose(2, 0, 1, 3)
    flat["head_w"], flat["head_b"] = head.reshape(side * side * c, -1), g["head"]["bias"]
    return flat


def _final_side(workload: Workload) -> int:
    side = workload.input_shape[0]
    for _ in range(NUM_CONV_BLOCKS):
        side //= 2
    return side


class JmetaStep:
    """A compiled jmeta meta-step on a fixed batch (see the module doc)."""

    def __init__(self, workload: Workload, params: Params, batch: TaskBatch, device, **options):
        options = {**DEFAULT_OPTIONS, **options}
        self.peer, self.workload, self.options = PEER, workload, options
        self.first_losses: list = []
        self.num_tasks, self.device = batch.num_tasks, device.platform
        self._jax_device = device
        param_dtype = jnp.asarray(params[next(iter(params))]).dtype
        model = model_for(workload, options["conv_impl"], options["precision"], param_dtype)
        loss = jmeta.losses.cross_entropy if workload.is_classification else jmeta.losses.mse
        learner = jmeta.maml(
            model.apply,
            loss,
            inner_lr=workload.inner_lr,
            num_steps=workload.inner_steps,
            first_order=workload.first_order,
            remat=options["remat"],
            unroll=options["unroll"],
        )
        # The meta-optimizer as jmeta's trainer builds it: Adam on the raveled
        # parameters (one fused update instead of one per leaf; the same updates up to rounding).
        self.step = jmeta.meta_train_step(
            learner, optax.flatten(optax.adam(workload.meta_lr)), chunk_size=options["chunk_size"]
        )
        self.state = jax.device_put(self.step.init(to_jmeta(workload, params)), device)
        sy, qy = batch.support_y, batch.query_y
        if not workload.is_classification:  # regression targets are [T, n, 1]
            sy, qy = sy.reshape(*sy.shape[:2], -1), qy.reshape(*qy.shape[:2], -1)
        self.tasks = jax.device_put(
            jmeta.Task(jmeta.Batch(batch.support_x, sy), jmeta.Batch(batch.query_x, qy)), device
        )
        self.key = jax.device_put(jax.random.key(0), device)
        self._update = jmeta.jit_step(self.step)
        self._grad = jax.jit(lambda p, t, k: jmeta.meta_gradient(learner, p, t, k))

    def compile(self) -> int:
        """Compile ahead of time; returns the step's device footprint in bytes."""
        compiled = self._update.lower(self.state, self.tasks, self.key).compile()
        self._update = compiled
        return footprint_bytes(compiled)

    def __call__(self) -> None:
        self.state, metrics = self._update(self.state, self.tasks, self.key)
        if len(self.first_losses) < 3:  # meta-losses of the first calls, to check peers agree
            self.first_losses.append(metrics["loss"])
        jax.block_until_ready((self.state, metrics))

    def loss_and_grad(self) -> tuple[float, Params]:
        grads, metrics = self._grad(self.state.meta_params, self.tasks, self.key)
        return float(metrics["loss"]), from_jmeta(self.workload, grads)


def build(
    workload: Workload,
    batch_size: int,
    device: str | None = None,
    *,
    seed: int = 0,
    dtype: str = "float32",
    params: Params | None = None,
    batch: TaskBatch | None = None,
    **options,
) -> JmetaStep:
    """Build jmeta's meta-step (see :class:`benchmarks.peers.base.Builder`).

    ``options``: ``conv_impl``, ``precision``, ``remat``, ``unroll``, ``chunk_size``.
    """
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("float64 needs jax_enable_x64 (e.g. `with jax.enable_x64(True):`)")
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown jmeta options {sorted(unknown)}; known: {sorted(DEFAULT_OPTIONS)}"
        )
    params = init_params(workload, seed, dtype) if params is None else params
    batch = make_batch(workload, batch_size, seed, dtype) if batch is None else batch
    return JmetaStep(workload, params, batch, resolve_device(device), **options)
