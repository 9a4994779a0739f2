"""Pieces shared by the scaling, memory and mixed-precision benchmarks."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jmeta

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PRECISIONS = {"float32": None, "bfloat16": jnp.bfloat16}


def conv4(num_classes: int, precision: str = "float32", channels: int = 64, conv_impl: str = "xla"):
    """``(init, apply)`` of ``jmeta.models.conv4`` on 28x28x1 inputs computing in ``precision``.

    Parameters are float32 either way; ``"bfloat16"`` computes in bfloat16
    (the model's own ``dtype=``: it fixes its compute dtype when built, so
    wrapping it with ``mixed_precision`` would change nothing).
    ``conv_impl="im2col"`` computes each convolution as one matrix product over
    shifted copies of the input: under ``vmap`` with per-task weights XLA's own
    convolution becomes a grouped convolution, which is very slow on CPU.
    """
    model = jmeta.models.conv4(
        num_classes,
        channels=channels,
        input_shape=(28, 28, 1),
        dtype=PRECISIONS[precision],
        conv_impl=conv_impl,
    )
    return model.init, model.apply


def sinusoid_mlp() -> jmeta.Model:
    """The MAML paper's sinusoid regressor, MLP 1-40-40-1 with ReLU, written out.

    It computes in the dtype of its inputs and parameters (unlike
    ``jmeta.models.mlp``, which fixes its compute dtype when built), so
    ``jmeta.precision.mixed_precision`` decides its precision.
    """
    sizes, names = (1, 40, 40, 1), ("layer0", "layer1", "head")

    def init(key):
        keys = jax.random.split(key, len(names))
        return {
            name: {
                "kernel": jax.random.normal(keys[i], sizes[i : i + 2]) / np.sqrt(sizes[i]),
                "bias": jnp.zeros(sizes[i + 1]),
            }
            for i, name in enumerate(names)
        }

    def apply(params, x):
        for name in names[:-1]:
            x = jax.nn.relu(x @ params[name]["kernel"] + params[name]["bias"])
        return x @ params["head"]["kernel"] + params["head"]["bias"]

    return jmeta.Model(init, apply)


def random_image_tasks(key, num_tasks: int, ways: int = 5, shots: int = 1, queries: int = 15):
    """A batch of Omniglot-shaped tasks of random pixels (for memory and speed only)."""
    k_s, k_q = jax.random.split(key)
    n_s, n_q = ways * shots, ways * queries
    return jmeta.Task(
        jmeta.Batch(
            jax.random.uniform(k_s, (num_tasks, n_s, 28, 28, 1)),
            jnp.broadcast_to(jnp.arange(n_s, dtype=jnp.int32) % ways, (num_tasks, n_s)),
        ),
        jmeta.Batch(
            jax.random.uniform(k_q, (num_tasks, n_q, 28, 28, 1)),
            jnp.broadcast_to(jnp.arange(n_q, dtype=jnp.int32) % ways, (num_tasks, n_q)),
        ),
    )


def episodic_sampler(images, ways: int, shots: int, queries: int):
    """``(key) -> Task``: an N-way K-shot task from ``uint8 [classes, examples, H, W, C]`` images.

    Classes are drawn without replacement and relabelled ``0..N-1``; each
    class's support and query examples are disjoint. Pixels become float32 in
    ``[0, 1]``.
    """
    images = jnp.asarray(images)
    num_classes, per_class = images.shape[:2]

    def sample(key):
        k_cls, k_ex = jax.random.split(key)
        classes = jax.random.choice(k_cls, num_classes, (ways,), replace=False)
        order = jax.vmap(lambda k: jax.random.permutation(k, per_class)[: shots + queries])(
            jax.random.split(k_ex, ways)
        )
        x = images[classes[:, None], order].astype(jnp.float32) / 255.0
        labels = jnp.broadcast_to(jnp.arange(ways, dtype=jnp.int32)[:, None], order.shape)

        def part(a, lo, hi):
            return a[:, lo:hi].reshape(ways * (hi - lo), *a.shape[2:])

        n = shots + queries
        return jmeta.Task(
            jmeta.Batch(part(x, 0, shots), part(labels, 0, shots)),
            jmeta.Batch(part(x, shots, n), part(labels, shots, n)),
        )

    return sample


def omniglot_dir() -> Path:
    env = os.environ.get("JMETA_OMNIGLOT_DIR")
    return Path(env) if env else (REPO / ".." / "shared" / "data" / "omniglot").resolve()


def machine_line() -> str:
    """One line about where the numbers come from."""
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    load = ""
    if hasattr(os, "getloadavg"):
        load = f"; 1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    return (
        f"{datetime.date.today()}, JAX {jax.__version__} on {jax.default_backend()} "
        f"({len(devices)} x {', '.join(kinds)}); "
        f"Python {platform.python_version()}{load}"
    )


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(x):
        return f"{x:.3g}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
