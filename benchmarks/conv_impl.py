"""Times a vmapped second-order MAML step of Conv4 for each ``conv_impl``.

Per step: for each of ``--tasks`` tasks (vmapped), the support loss, its
gradient, one SGD step of size 0.4, the query loss of the adapted weights;
then the gradient of the mean query loss with respect to the initialisation
(through the inner step: second order). Under ``vmap`` the adapted weights
differ per task, which is where ``conv_impl="xla"`` becomes a grouped
convolution and ``"im2col"`` a batched matrix product.

This is a benchmark, not a test:

    PYTHONPATH=. python benchmarks/conv_impl.py             # Omniglot 5-way 1-shot
    PYTHONPATH=. python benchmarks/conv_impl.py --steps 20 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jmeta.models import conv4
from jmeta.types import Model


def make_step(model: Model, inner_lr: float):
    def loss(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()

    def task_loss(params, support_x, support_y, query_x, query_y):
        grads = jax.grad(loss)(params, support_x, support_y)
        adapted = jax.tree.map(lambda p, g: p - inner_lr * g, params, grads)
        return loss(adapted, query_x, query_y)

    def meta_loss(params, batch):
        return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(params, *batch))

    return jax.jit(jax.value_and_grad(meta_loss))


def random_batch(args: argparse.Namespace, shape: tuple[int, int, int]):
    rng = np.random.default_rng(0)
    n_support, n_query = args.ways * args.shots, args.ways * args.queries
    return tuple(
        jnp.asarray(a)
        for a in (
            rng.standard_normal((args.tasks, n_support, *shape), np.float32),
            rng.integers(0, args.ways, (args.tasks, n_support)),
            rng.standard_normal((args.tasks, n_query, *shape), np.float32),
            rng.integers(0, args.ways, (args.tasks, n_query)),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impls", nargs="+", default=["xla", "im2col"])
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15, help="query examples per class")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--image-channels", type=int, default=1)
    parser.add_argument("--batch-norm", default="transductive")
    parser.add_argument("--dtype", default="float32", help="compute dtype; params stay float32")
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
    args = parser.parse_args()

    shape = (args.image_size, args.image_size, args.image_channels)
    batch = random_batch(args, shape)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{os.cpu_count()} CPUs; {args.tasks} tasks, {args.ways}-way {args.shots}-shot, "
        f"{args.queries} queries/class, {shape}, conv4 {args.channels} channels, "
        f"batch_norm={args.batch_norm}, dtype={args.dtype}",
        flush=True,
    )
    for impl in args.impls:
        model = conv4(
            args.ways,
            channels=args.channels,
            input_shape=shape,
            batch_norm=args.batch_norm,
            conv_impl=impl,
            dtype=jnp.dtype(args.dtype),
        )
        params = model.init(jax.random.key(0))
        step = make_step(model, args.inner_lr)
        start = time.perf_counter()
        jax.block_until_ready(step(params, batch))
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            loss, _ = jax.block_until_ready(step(params, batch))
            times.append(time.perf_counter() - start)
        print(
            f"conv_impl={impl:7s} first call (compile + run) {compile_s:7.2f} s   "
            f"step median {1e3 * statistics.median(times):9.1f} ms   "
            f"min {1e3 * min(times):9.1f} ms   (loss {float(loss):.4f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
