"""bfloat16 compute with float32 master parameters against float32, on sinusoid and Omniglot.

The same second-order MAML run, seed for seed, once in float32 and once with
the model computing in bfloat16 (``jmeta.precision.mixed_precision``:
parameters, inner gradients, losses and the meta-optimizer stay float32):

* sinusoid regression (MAML paper 5.1): MLP 1-40-40-1, 10-shot, 25 tasks per
  meta-batch, 1 inner SGD step (lr 0.01), Adam 1e-3; evaluated by the query
  MSE after 10 inner steps on 1,000 new tasks.
* Omniglot 5-way 1-shot on the real minimal split shipped in
  ``shared/data/omniglot`` (``minimal-train`` with rotations, ``minimal-test``):
  Conv4 (``--channels`` filters), 5 queries per class, 4 tasks per meta-batch,
  1 inner step (lr 0.4), Adam 1e-3; evaluated by query accuracy after 3 inner
  steps on 400 test tasks. Small, so that it runs on a 2-core CPU (raise
  ``--omniglot-steps``, ``--omniglot-seeds`` and ``--channels`` where there is time).

Every step's metrics are checked for NaN/inf. Results are the mean over seeds
with the spread between seeds, and each run's 95% interval over test tasks.
Writes ``benchmarks/results/mixed_precision.md``.

Run from the repository root (``--quick`` for a short smoke run):

    PYTHONPATH=$PWD python benchmarks/mixed_precision.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jmeta  # noqa: E402
from jmeta.precision import mixed_precision  # noqa: E402

EVAL_CHUNK = 100


def train(learner, params, sample, num_steps: int, steps_per_call: int, seed: int):
    """Meta-train; returns the final meta-parameters, the loss curve and whether all were finite."""
    with jax.numpy_dtype_promotion("standard"):  # optax.adam
        step = jmeta.meta_train_step(learner, optax.adam(1e-3))
        run = jmeta.scan_steps(step, sample, steps_per_call)
        state = step.init(learner.init(params))
        losses, finite = [], True
        for _ in range(num_steps // steps_per_call):
            state, metrics = run(state, jax.random.key(seed))
            losses.append(np.asarray(metrics["loss"]))
            finite &= bool(np.all(metrics["finite"])) and bool(np.isfinite(losses[-1]).all())
    return state.meta_params, np.concatenate(losses), finite


def evaluate(learner, meta_params, sample, num_tasks: int, inner_steps: int, metric: str):
    """Per-task ``metric`` after ``inner_steps`` on ``num_tasks`` new tasks, in chunks."""
    fn = jax.jit(
        lambda p, key: jmeta.evaluate_tasks(
            learner, p, jax.vmap(sample)(jax.random.split(key, EVAL_CHUNK)), key, inner_steps
        )[metric]
    )
    keys = jax.random.split(jax.random.key(12345), num_tasks // EVAL_CHUNK)
    return np.concatenate([np.asarray(fn(meta_params, k)) for k in keys])


def sinusoid_runs(precision: str, seeds, num_steps: int, eval_tasks: int):
    from _common import sinusoid_mlp

    init, apply = sinusoid_mlp()
    model_apply = apply if precision == "float32" else mixed_precision(apply)
    learner = jmeta.maml(model_apply, jmeta.losses.mse, inner_lr=0.01, num_steps=1)
    sample = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 25)
    out = []
    for seed in seeds:
        start = time.perf_counter()
        theta, losses, finite = train(
            learner, init(jax.random.key(seed)), sample, num_steps, 100, seed
        )
        mse = evaluate(learner, theta, jmeta.tasks.sinusoid, eval_tasks, 10, "loss")
        out.append((mse, losses, finite, time.perf_counter() - start))
        print(f"sinusoid {precision} seed {seed}: mse {mse.mean():.4f} finite {finite}", flush=True)
    return out


def omniglot_runs(precision: str, seeds, num_steps: int, eval_tasks: int, channels: int):
    from _common import conv4, episodic_sampler, omniglot_dir

    from jmeta.datasets import load, rotate_classes

    data_dir = omniglot_dir()
    train_images = rotate_classes(load("omniglot", "minimal-train", data_dir=data_dir)).images
    test_images = load("omniglot", "minimal-test", data_dir=data_dir).images
    train_task = episodic_sampler(train_images, ways=5, shots=1, queries=5)
    test_task = episodic_sampler(test_images, ways=5, shots=1, queries=5)
    init, apply = conv4(5, precision, channels=channels, conv_impl="im2col")
    metrics = {"accuracy": jmeta.losses.accuracy}
    learner = jmeta.maml(
        apply, jmeta.losses.cross_entropy, inner_lr=0.4, num_steps=1, metrics=metrics
    )
    sample = lambda key, data: jax.vmap(train_task)(jax.random.split(key, 4))  # noqa: E731
    out = []
    for seed in seeds:
        start = time.perf_counter()
        params = init(jax.random.key(seed))
        theta, losses, finite = train(learner, params, sample, num_steps, 50, seed)
        acc = evaluate(learner, theta, test_task, eval_tasks, 3, "accuracy")
        out.append((acc, losses, finite, time.perf_counter() - start))
        print(f"omniglot {precision} seed {seed}: acc {acc.mean():.4f} finite {finite}", flush=True)
    return out


def summarize(name: str, runs_by_precision: dict, unit: str, scale: float = 1.0) -> list[list]:
    rows = []
    for precision, runs in runs_by_precision.items():
        means = [scale * r[0].mean() for r in runs]
        cis = [1.96 * scale * r[0].std(ddof=1) / np.sqrt(len(r[0])) for r in runs]
        per_seed = ", ".join(f"{m:.3f} ± {c:.3f}" for m, c in zip(means, cis, strict=True))
        spread = f"{np.std(means, ddof=1):.3f}" if len(means) > 1 else "-"
        last = np.mean([r[1][-len(r[1]) // 10 :].mean() for r in runs])
        rows.append(
            [
                name,
                precision,
                f"{np.mean(means):.3f} {unit}",
                spread,
                per_seed,
                f"{last:.3f}",
                "yes" if all(r[2] for r in runs) else "NO",
                f"{np.mean([r[3] for r in runs]):.0f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None, help="sinusoid seeds")
    parser.add_argument("--omniglot-seeds", type=int, default=None)
    parser.add_argument("--sinusoid-steps", type=int, default=None)
    parser.add_argument("--omniglot-steps", type=int, default=None)
    parser.add_argument("--channels", type=int, default=32, help="Conv4 filters for Omniglot")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from _common import RESULTS, markdown_table

    from benchmarks.machine import describe

    seeds = range(args.seeds or (1 if args.quick else 2))
    omni_seeds = range(args.omniglot_seeds or 1)
    sin_steps = args.sinusoid_steps or (200 if args.quick else 2000)
    omni_steps = args.omniglot_steps or (50 if args.quick else 200)
    machine = describe()
    sinusoid = {p: sinusoid_runs(p, seeds, sin_steps, 1000) for p in ("float32", "bfloat16")}
    omniglot = {
        p: omniglot_runs(p, omni_seeds, omni_steps, 400, args.channels)
        for p in ("float32", "bfloat16")
    }
    header = [
        "task",
        "compute",
        "test result (mean over seeds)",
        "spread between seeds (std)",
        "per seed ± 95% CI over test tasks",
        "final train loss",
        "all steps finite",
        "s per run",
    ]
    rows = summarize("sinusoid, query MSE after 10 steps", sinusoid, "MSE")
    rows += summarize("Omniglot 5-way 1-shot, accuracy after 3 steps", omniglot, "%", 100.0)
    text = "\n".join(
        [
            "# Mixed precision (bfloat16 compute, float32 parameters) against float32",
            "",
            f"Machine: {machine}.",
            "",
            f"Second-order MAML, the same seeds for both precisions ({len(seeds)} for sinusoid, "
            f"{len(omni_seeds)} for Omniglot). Sinusoid: MLP 1-40-40-1, 10-shot, 25 tasks per "
            "meta-batch, "
            f"{sin_steps} meta-steps, 1 inner step (lr 0.01), Adam 1e-3; test on 1,000 new "
            f"tasks. Omniglot: the real minimal split (`minimal-train` with rotations, "
            f"`minimal-test`), Conv4 with {args.channels} filters, 5-way 1-shot with 5 queries "
            f"per class, 4 tasks per meta-batch, {omni_steps} meta-steps, 1 inner step (lr "
            "0.4), Adam 1e-3; test on 400 tasks. `bfloat16`: the sinusoid MLP is wrapped with "
            "`jmeta.precision.mixed_precision`, Conv4 is `jmeta.models.conv4(dtype=bfloat16)`; "
            "the model computes in bfloat16, while parameters, inner and outer gradients, "
            "losses and the meta-optimizer stay float32. `final train loss`: mean meta-loss "
            "over the last 10% of steps.",
            "",
            markdown_table(header, rows),
            "",
        ]
    )
    print(text)
    out = args.out or RESULTS / ("mixed_precision_quick.md" if args.quick else "mixed_precision.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
