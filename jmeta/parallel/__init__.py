"""Meta-steps across devices and hosts, with the task axis sharded.

Three ways to run one meta-step on many devices, all computing what the
single-device step computes (the mean meta-gradient over the whole meta-batch):

* :func:`sharded_step` / :func:`sharded_scan_steps`: ``jax.jit`` with a
  ``NamedSharding`` on a 1-D ``"tasks"`` mesh (tasks split, state
  replicated); the compiler partitions the ordinary step. The default.
* :func:`shard_map_step`: ``jax.shard_map``; each device vmaps over its own
  tasks and one explicit ``lax.pmean`` averages gradients and metrics. The step
  is built with ``jmeta.meta_train_step(..., axis_name="tasks")``.
* :func:`pmap_step`: the same per-device step under ``jax.pmap``.

Multi-host: call ``jax.distributed.initialize`` in every process, build the
mesh over all devices with :func:`task_mesh`, and feed each process's tasks
with :func:`shard_process_tasks` (or sample inside :func:`sharded_scan_steps`).
"""

from jmeta.parallel.mesh import (
    TASKS,
    check_divisible,
    process_task_slice,
    replicate,
    replicated,
    shard_process_tasks,
    shard_tasks,
    task_mesh,
    task_sharding,
)
from jmeta.parallel.pmap import pmap_step, replicate_for_pmap, unreplicate
from jmeta.parallel.shard_map import shard_map_step
from jmeta.parallel.sharded import constrain_tasks, sharded_scan_steps, sharded_step

__all__ = [
    "TASKS",
    "check_divisible",
    "constrain_tasks",
    "pmap_step",
    "process_task_slice",
    "replicate",
    "replicate_for_pmap",
    "replicated",
    "shard_map_step",
    "shard_process_tasks",
    "shard_tasks",
    "sharded_scan_steps",
    "sharded_step",
    "task_mesh",
    "task_sharding",
    "unreplicate",
]
