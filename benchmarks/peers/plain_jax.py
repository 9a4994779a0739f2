"""Peer (a): a hand-written, deliberately unoptimised plain-JAX MAML step.

The "plain JAX vmap" reference: a functional conv4/MLP written directly in
``jax.lax``/``jnp`` (channels-last), an inner loop that is a Python ``for``
over ``jax.grad`` steps, ``jax.vmap`` over tasks, the mean query loss,
``jax.grad`` of that, and an ``optax.adam`` update, all under one
``jax.jit``. No layout tricks, no remat, no donation: this is what a careful
user would write first.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.peers.data import (
    BN_EPS,
    NUM_CONV_BLOCKS,
    Params,
    TaskBatch,
    init_params,
    make_batch,
)
from benchmarks.peers.timing import footprint_bytes
from benchmarks.peers.workloads import Workload

PEER = "plain_jax"

JaxParams = dict[str, jax.Array]


def resolve_device(device: str | None) -> jax.Device:
    """``None`` -> JAX's default device; ``"cuda"``/``"gpu"`` -> first GPU."""
    if device is None or device == "auto":
        return jax.devices()[0]
    platform = {"cuda": "gpu"}.get(device, device)
    return jax.devices(platform)[0]


def conv4_apply(params: JaxParams, x: jax.Array) -> jax.Array:
    """Conv4 on ``x: [n, H, W, C]``; BatchNorm uses this batch's statistics."""
    for i in range(NUM_CONV_BLOCKS):
        x = jax.lax.conv_general_dilated(
            x,
            params[f"conv{i}_w"],
            window_strides=(1, 1),
            padding=((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        x = x + params[f"conv{i}_b"]
        mean = jnp.mean(x, axis=(0, 1, 2))
        var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
        x = (x - mean) * jax.lax.rsqrt(var + BN_EPS)
        x = x * params[f"bn{i}_scale"] + params[f"bn{i}_bias"]
        x = jax.nn.relu(x)
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    # Flatten in (C, H, W) order, the canonical head layout (see data.py).
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    return x @ params["head_w"] + params["head_b"]


def mlp_apply(params: JaxParams, x: jax.Array) -> jax.Array:
    """ReLU MLP on ``x: [n, in_dim]``."""
    num_layers = len(params) // 2
    for i in range(num_layers):
        x = x @ params[f"fc{i}_w"] + params[f"fc{i}_b"]
        if i < num_layers - 1:
            x = jax.nn.relu(x)
    return x


def make_loss(workload: Workload):
    """``loss(params, x, y) -> scalar`` for one task's support or query set."""
    apply = conv4_apply if workload.model == "conv4" else mlp_apply

    def loss(params: JaxParams, x: jax.Array, y: jax.Array) -> jax.Array:
        out = apply(params, x)
        if workload.is_classification:
            logp = jax.nn.log_softmax(out)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return jnp.mean(jnp.square(out - y))

    return loss


def make_meta_loss(workload: Workload):
    """``meta_loss(params, batch) -> mean query loss after adaptation``."""
    loss = make_loss(workload)

    def task_loss(params: JaxParams, sx, sy, qx, qy) -> jax.Array:
        fast = params
        for _ in range(workload.inner_steps):
            grads = jax.grad(loss)(fast, sx, sy)
            if workload.first_order:
                grads = jax.lax.stop_gradient(grads)
            fast = jax.tree.map(lambda p, g: p - workload.inner_lr * g, fast, grads)
        return loss(fast, qx, qy)

    def meta_loss(params: JaxParams, batch: TaskBatch) -> jax.Array:
        losses = jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(params, *batch)
        return jnp.mean(losses)

    return meta_loss


class PlainJaxStep:
    """A jitted plain-JAX MAML meta-step on a fixed batch (see module doc)."""

    def __init__(
        self,
        workload: Workload,
        params: Params,
        batch: TaskBatch,
        device: jax.Device,
        compiler_options: dict[str, Any] | None = None,
    ) -> None:
        self.peer = PEER
        self.first_losses: list = []
        self.workload = workload
        self.num_tasks = batch.num_tasks
        self.device = device.platform
        self._jax_device = device
        self.params: JaxParams = jax.device_put(
            {k: jnp.asarray(v) for k, v in params.items()}, device
        )
        self.batch = TaskBatch(*jax.device_put(tuple(batch), device))
        self.optimizer = optax.adam(workload.meta_lr)
        self.opt_state: Any = jax.device_put(self.optimizer.init(self.params), device)
        meta_loss = make_meta_loss(workload)
        value_and_grad = jax.value_and_grad(meta_loss)
        optimizer = self.optimizer

        def step(params, opt_state, batch):
            loss, grads = value_and_grad(params, batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self._step = jax.jit(step, compiler_options=compiler_options)
        self._value_and_grad = jax.jit(value_and_grad, compiler_options=compiler_options)

    def compile(self) -> int:
        """Compile ahead of time; returns the step's device footprint in bytes."""
        self._step = self._step.lower(self.params, self.opt_state, self.batch).compile()
        return footprint_bytes(self._step)

    def __call__(self) -> None:
        self.params, self.opt_state, loss = self._step(self.params, self.opt_state, self.batch)
        if len(self.first_losses) < 3:  # meta-losses of the first calls, to check peers agree
            self.first_losses.append(loss)
        jax.block_until_ready((self.params, self.opt_state, loss))

    def loss_and_grad(self) -> tuple[float, Params]:
        loss, grads = self._value_and_grad(self.params, self.batch)
        return float(loss), {k: np.asarray(v) for k, v in grads.items()}


def _check_dtype(dtype: str) -> None:
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("float64 needs jax_enable_x64 (e.g. `with jax.enable_x64(True):`)")


def build(
    workload: Workload,
    batch_size: int,
    device: str | None = None,
    *,
    seed: int = 0,
    dtype: str = "float32",
    params: Params | None = None,
    batch: TaskBatch | None = None,
    compiler_options: dict[str, Any] | None = None,
) -> PlainJaxStep:
    """Build the plain-JAX meta-step (see :class:`benchmarks.peers.base.Builder`).

    ``compiler_options`` go to ``jax.jit``; the benchmark leaves them unset
    (tests lower XLA:CPU's optimisation level to save compile time).
    """
    _check_dtype(dtype)
    params = init_params(workload, seed, dtype) if params is None else params
    batch = make_batch(workload, batch_size, seed, dtype) if batch is None else batch
    return PlainJaxStep(workload, params, batch, resolve_device(device), compiler_options)
