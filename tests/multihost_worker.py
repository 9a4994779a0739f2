"""One process of the two-process test in tests/parallel/test_multihost.py.

Run as ``python multihost_worker.py PORT PROCESS_ID NUM_PROCESSES OUT_DIR`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``. Every process joins the
same ``jax.distributed`` job, feeds only its own slice of the meta-batch
(``shard_process_tasks``) and computes, over the mesh of all processes' devices,
the meta-gradient, one Adam meta-step, and two meta-steps with tasks sampled
inside the compiled call; each process writes its copy of the results.
"""

import os
import sys

import jax
import numpy as np
import optax
from parallel_helpers import (
    NUM_TASKS,
    heterogeneous_tasks,
    init_params,
    learner,
    sample_heterogeneous,
)

import jmeta
from jmeta import parallel


def main(port, process_id, num_processes, out_dir):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
        heartbeat_timeout_seconds=20,
        shutdown_timeout_seconds=20,
    )
    mesh = parallel.task_mesh()
    assert mesh.size == jax.device_count() > jax.local_device_count(), mesh
    mine = parallel.process_task_slice(NUM_TASKS, mesh)
    tasks = jax.tree.map(np.asarray, heterogeneous_tasks(jax.random.key(1)))
    global_tasks = parallel.shard_process_tasks(jax.tree.map(lambda a: a[mine], tasks), mesh)
    key = jax.random.key(2)

    grad = jax.jit(
        lambda p, t, k: jmeta.meta_gradient(learner(), p, t, k)[0],
        out_shardings=parallel.replicated(mesh),
    )
    grads = grad(parallel.replicate(init_params(), mesh), global_tasks, key)
    with jax.numpy_dtype_promotion("standard"):  # optax.adam
        step = jmeta.meta_train_step(learner(), optax.adam(1e-2))
        state, metrics = parallel.sharded_step(step, mesh)(
            step.init(init_params()), global_tasks, key
        )
        run = parallel.sharded_scan_steps(step, sample_heterogeneous, 2, mesh)
        scanned, _ = run(step.init(init_params()), key)

    def local_copy(x):  # replicated: this process's devices hold the whole value
        return np.asarray(x.addressable_shards[0].data)

    out = {"slice": np.array([mine.start, mine.stop]), "loss": local_copy(metrics["loss"])}
    for name, tree in [("grad", grads), ("step", state.meta_params), ("scan", scanned.meta_params)]:
        out.update({f"{name}{i}": local_copy(x) for i, x in enumerate(jax.tree.leaves(tree))})
    np.savez(os.path.join(out_dir, f"process{process_id}.npz"), **out)
    jax.distributed.shutdown()


if __name__ == "__main__":
    port, process_id, num_processes, out_dir = sys.argv[1:5]
    with jax.numpy_dtype_promotion("strict"):
        main(int(port), int(process_id), int(num_processes), out_dir)
