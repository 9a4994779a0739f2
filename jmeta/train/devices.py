"""The devices a run uses: a task mesh over every process's devices, and placing values on it.

Each meta-batch, and each batch of validation and test tasks, is split over a
1-D mesh (:func:`jmeta.parallel.task_mesh`) of ``devices`` devices of every
process (default: all of them); parameters, optimizer state and the data set
are replicated on every device (the data set costs its uint8 size on each).
Training tasks are drawn from ``fold_in(key, step)`` whatever the mesh, so a
seed gives the same tasks and computation on any number of devices; the sums
over tasks round differently (see docs/scaling.md).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jmeta import parallel
from jmeta.train.config import ConfigValueError, TrainConfig


def train_mesh(config: TrainConfig) -> Mesh:
    """The mesh of ``config.devices`` devices of each process (all by default).

    Raises:
      ConfigValueError: ``devices`` is more than a process has, or
        ``meta_batch_size`` does not split evenly over the mesh; the message
        names the fields and the sizes that work.
    """
    local = jax.local_device_count()
    count = local if config.devices is None else config.devices
    if count > local:
        raise ConfigValueError(
            "{0} {value} is more than the {local} {kind} device(s) this process has.",
            ["devices"], value=count, local=local, kind=jax.default_backend(),
        )  # fmt: skip
    processes = jax.process_count()
    chosen = [
        device
        for p in range(processes)
        for device in sorted(
            (d for d in jax.devices() if d.process_index == p), key=lambda d: d.id
        )[:count]
    ]
    total = len(chosen)
    batch = config.meta_batch_size
    if batch % total:
        fits = [n for n in range(1, local + 1) if batch % (n * processes) == 0]
        hosts = f" on each of {processes} processes" if processes > 1 else ""
        raise ConfigValueError(
            "{0} ({batch}) must split evenly over the {total} devices that run it "
            "({1} {per}{default}{hosts}): use a multiple of {total} tasks (e.g. {up}), or "
            "{1} {fits}.", ["meta_batch_size", "devices"], batch=batch, total=total,
            per=count, hosts=hosts, up=-(-batch // total) * total,
            default=", all of them, by default" if config.devices is None else "",
            fits=" or ".join(map(str, fits)) if fits else f"of any value with {batch} tasks",
        )  # fmt: skip
    return parallel.task_mesh(chosen)


def to_mesh(tree: Any, mesh: Mesh) -> Any:
    """A pytree of host values (every process the same) as arrays replicated on ``mesh``.

    Built shard by shard from this process's copy
    (``jax.make_array_from_callback``), so it works with several processes,
    where no process can place a value on another's devices.
    """
    sharding = parallel.replicated(mesh)

    def put(x):
        # Equal, not merely equivalent: a value on one device is "equivalent" to one replicated
        # on a 1-device mesh, but compiles to another program (no sharding annotation), which
        # misses the persistent compilation cache the trainer filled.
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(put, tree)
