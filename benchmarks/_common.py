"""Pieces shared by the scaling, memory and mixed-precision benchmarks."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp

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
    """The MAML paper's sinusoid regressor, ``jmeta.models.mlp((1, 40, 40, 1))`` (ReLU).

    It computes in the dtype of the parameters it is given, so
    ``jmeta.precision.mixed_precision`` decides its precision.
    """
    return jmeta.models.mlp((1, 40, 40, 1))


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
    """``(key) -> Task``: ``jmeta.tasks.few_shot`` on ``uint8 [classes, examples, H, W, C]``
    images (moved to the device once), pixels as float32 in ``[0, 1]``."""
    return functools.partial(
        jmeta.tasks.few_shot, images=jnp.asarray(images), ways=ways, shots=shots, queries=queries
    )


def omniglot_dir() -> Path:
    env = os.environ.get("JMETA_OMNIGLOT_DIR")
    return Path(env) if env else (REPO / ".." / "shared" / "data" / "omniglot").resolve()


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(x):
        return f"{x:.3g}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
