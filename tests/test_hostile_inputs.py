"""The library's hostile-input cases: each is an error of a stated type that names the argument.

One row per kind of misuse, through the public API: impossible hyperparameters,
wrong types, shapes, ranks and dtypes, support/query mismatches, key shapes,
chunk sizes, labels that do not fit the model, models and learners that
disagree. Every row asserts the exception type and a message naming what to
fix. Value checks that cannot raise under ``jit`` (labels) are in
``tests/test_validation.py``; the trainer's and the data layer's cases are in
their own test modules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy import clusters_task, embed_apply, embed_init, mlp_apply, mlp_init

import jmeta
from jmeta.losses import accuracy, cross_entropy, mse
from jmeta.models import conv4, mlp, resnet12, with_batch_norm_policy

THETA = mlp_init(jax.random.key(0))  # 1-8-8-1
EMBED = embed_init(jax.random.key(0))  # 16 -> 16 features
IMG = (16, 16, 1)


class Case(NamedTuple):
    call: Callable[[], object]
    error: type[Exception]
    match: str


def regression_task(ns=5, nq=4, d=1):
    return jmeta.Task(
        jmeta.Batch(jnp.zeros((ns, d)), jnp.zeros((ns, 1))),
        jmeta.Batch(jnp.zeros((nq, d)), jnp.zeros((nq, 1))),
    )


def tasks(num=4):
    return jax.tree.map(lambda a: jnp.stack([a] * num), regression_task())


def clusters(ways=5, shots=1, queries=2):
    return clusters_task(jax.random.key(1), ways=ways, shots=shots, queries=queries)


def maml(**kwargs):
    options = {"inner_lr": 0.1, **kwargs}
    return jmeta.maml(options.pop("apply_fn", mlp_apply), options.pop("loss_fn", mse), **options)


def meta_loss(learner, task, params=THETA):
    return lambda: learner.meta_loss(learner.init(params), task)


def with_(task, part, **fields):
    return task._replace(**{part: getattr(task, part)._replace(**fields)})


def three_outputs(params, x):  # a classifier with 3 outputs, for 5-way tasks
    return embed_apply(params, x)[:, :3]


LEARNER = maml()
STEP = functools.partial(jmeta.meta_train_step, LEARNER)
KEY = jax.random.key(0)
CONV_SUPPORT = conv4(3, channels=2, input_shape=IMG, batch_norm="support")
CONV_TRANSDUCTIVE = conv4(None, channels=2, input_shape=IMG)
CONV_PARAMS = CONV_SUPPORT.init(KEY)

CASES = {
    # --- builders: non-finite, out-of-range and mistyped hyperparameters -------------
    "inner_lr nan": Case(
        lambda: maml(inner_lr=float("nan")), ValueError, "inner_lr must be a finite"
    ),
    "inner_lr inf": Case(
        lambda: maml(inner_lr=float("inf")), ValueError, "inner_lr must be a finite"
    ),
    "inner_lr negative": Case(
        lambda: maml(inner_lr=-1.0), ValueError, r"inner_lr must be > 0; got -1"
    ),
    "inner_lr zero": Case(lambda: maml(inner_lr=0), ValueError, r"inner_lr must be > 0"),
    "inner_lr string": Case(
        lambda: maml(inner_lr="0.1"), TypeError, "inner_lr must be a real number"
    ),
    "inner_lr array": Case(lambda: maml(inner_lr=np.ones(2)), TypeError, "inner_lr must be a real"),
    "inner_lr and inner_optimizer": Case(
        lambda: maml(inner_optimizer=optax.sgd(0.1)), ValueError, "exactly one of inner_lr"
    ),
    "neither inner_lr nor inner_optimizer": Case(
        lambda: jmeta.maml(mlp_apply, mse), ValueError, "exactly one of inner_lr"
    ),
    "inner_optimizer not called": Case(
        lambda: maml(inner_lr=None, inner_optimizer=optax.sgd),
        TypeError,
        r"inner_optimizer must be an optax.GradientTransformation.*call it",
    ),
    "inner_optimizer string": Case(
        lambda: maml(inner_lr=None, inner_optimizer="adam"), TypeError, "inner_optimizer must be"
    ),
    "num_steps zero": Case(lambda: maml(num_steps=0), ValueError, "num_steps must be >= 1"),
    "num_steps float": Case(lambda: maml(num_steps=1.5), TypeError, "num_steps must be an integer"),
    "num_steps bool": Case(lambda: maml(num_steps=True), TypeError, "num_steps must be an integer"),
    "first_order string": Case(
        lambda: maml(first_order="yes"), TypeError, "first_order must be True or False"
    ),
    "remat int": Case(lambda: maml(remat=1), TypeError, "remat must be True or False"),
    "unroll zero": Case(lambda: maml(unroll=0), ValueError, "unroll must be >= 1"),
    "apply_fn None": Case(lambda: maml(apply_fn=None), TypeError, "apply_fn must be a function"),
    "loss_fn string": Case(lambda: maml(loss_fn="mse"), TypeError, "loss_fn must be a function"),
    "metrics list": Case(lambda: maml(metrics=[accuracy]), TypeError, "metrics must be a mapping"),
    "metrics value": Case(lambda: maml(metrics={"acc": 1}), TypeError, "metrics must map names"),
    "fomaml first_order": Case(
        lambda: jmeta.fomaml(mlp_apply, mse, inner_lr=0.1, first_order=False),
        TypeError,
        "fomaml is always first-order",
    ),
    "meta_sgd inner_lr nan": Case(
        lambda: jmeta.meta_sgd(mlp_apply, mse, inner_lr=float("nan")),
        ValueError,
        "inner_lr must be a finite",
    ),
    "anil head": Case(
        lambda: jmeta.anil(mlp_apply, mse, inner_lr=0.1, head=3), TypeError, "head must be"
    ),
    "anil adapt_params": Case(
        lambda: jmeta.anil(mlp_apply, mse, inner_lr=0.1, adapt_params=None),
        TypeError,
        "adapt_params",
    ),
    "reptile inner_data": Case(
        lambda: jmeta.reptile(mlp_apply, mse, inner_lr=0.1, inner_data="query"),
        ValueError,
        "inner_data must be one of",
    ),
    "reptile inner_lr negative": Case(
        lambda: jmeta.reptile(mlp_apply, mse, inner_lr=-0.1), ValueError, "inner_lr must be > 0"
    ),
    "imaml lam zero": Case(
        lambda: jmeta.imaml(mlp_apply, mse, inner_lr=0.1, lam=0.0), ValueError, "lam must be > 0"
    ),
    "imaml lam nan": Case(
        lambda: jmeta.imaml(mlp_apply, mse, inner_lr=0.1, lam=float("nan")),
        ValueError,
        "lam must be a finite",
    ),
    "imaml cg_steps": Case(
        lambda: jmeta.imaml(mlp_apply, mse, inner_lr=0.1, cg_steps=0),
        ValueError,
        "cg_steps must be >= 1",
    ),
    "imaml cg_tol": Case(
        lambda: jmeta.imaml(mlp_apply, mse, inner_lr=0.1, cg_tol=-1.0),
        ValueError,
        "cg_tol must be >= 0",
    ),
    "cavia context_size": Case(
        lambda: jmeta.cavia(mlp_apply, mse, context_size=0, inner_lr=0.1),
        ValueError,
        "context_size must be >= 1",
    ),
    "protonet neither num_classes nor shots": Case(
        lambda: jmeta.protonet(embed_apply), ValueError, "exactly one of num_classes"
    ),
    "protonet num_classes and shots": Case(
        lambda: jmeta.protonet(embed_apply, num_classes=5, shots=1),
        ValueError,
        "exactly one of num_classes",
    ),
    "protonet one class": Case(
        lambda: jmeta.protonet(embed_apply, num_classes=1), ValueError, "num_classes must be >= 2"
    ),
    "protonet shots zero": Case(
        lambda: jmeta.protonet(embed_apply, shots=0), ValueError, "shots must be >= 1"
    ),
    "protonet distance": Case(
        lambda: jmeta.protonet(embed_apply, shots=1, distance="manhattan"),
        ValueError,
        "distance must be one of",
    ),
    "protonet scale zero": Case(
        lambda: jmeta.protonet(embed_apply, shots=1, scale=0.0), ValueError, "scale must be > 0"
    ),
    "protonet scale nan": Case(
        lambda: jmeta.protonet(embed_apply, shots=1, scale=float("nan")),
        ValueError,
        "scale must be a finite",
    ),
    "protonet learn_scale": Case(
        lambda: jmeta.protonet(embed_apply, shots=1, learn_scale="yes"),
        TypeError,
        "learn_scale must be True or False",
    ),
    "protonet embed_fn": Case(
        lambda: jmeta.protonet(None, shots=1), TypeError, "embed_fn must be a function"
    ),
    "matching_net scale": Case(
        lambda: jmeta.matching_net(embed_apply, shots=1, scale=-1.0),
        ValueError,
        "scale must be > 0",
    ),
    "r2d2 lam inf": Case(
        lambda: jmeta.r2d2(embed_apply, shots=1, lam=float("inf")),
        ValueError,
        "lam must be a finite",
    ),
    "r2d2 lam negative": Case(
        lambda: jmeta.r2d2(embed_apply, shots=1, lam=-1.0), ValueError, "lam must be > 0"
    ),
    "r2d2 scalar bias": Case(
        lambda: jmeta.r2d2(embed_apply, shots=1, bias=0.25), TypeError, "bias must be True"
    ),
    # --- models and learners that disagree on batch norm --------------------------------
    "transductive string": Case(
        lambda: maml(transductive="no"), TypeError, "transductive must be None"
    ),
    "support model, transductive learner": Case(
        lambda: maml(apply_fn=CONV_SUPPORT.apply, loss_fn=cross_entropy, transductive=True),
        ValueError,
        "transductive=True contradicts the model's batch_norm='support'",
    ),
    "transductive model, reference learner": Case(
        lambda: jmeta.protonet(CONV_TRANSDUCTIVE.apply, shots=1, transductive=False),
        ValueError,
        "transductive=False contradicts the model's batch_norm='transductive'",
    ),
    "unknown policy": Case(
        lambda: with_batch_norm_policy(mlp_apply, "batch"), ValueError, "policy must be one of"
    ),
    # --- meta-step, chunks and keys -----------------------------------------------------
    "optimizer None": Case(
        lambda: STEP(None), TypeError, "optimizer must be an optax.GradientTransformation"
    ),
    "optimizer not called": Case(
        lambda: STEP(optax.adam), TypeError, r"optimizer must be .*call it"
    ),
    "learner not a MetaLearner": Case(
        lambda: jmeta.meta_train_step(mlp_apply, optax.sgd(0.1)),
        TypeError,
        "learner must be a jmeta.MetaLearner",
    ),
    "skip_nonfinite string": Case(
        lambda: STEP(optax.sgd(0.1), skip_nonfinite="no"),
        TypeError,
        "skip_nonfinite must be True or False",
    ),
    "chunk_size not dividing": Case(
        lambda: jmeta.meta_gradient(LEARNER, THETA, tasks(4), KEY, chunk_size=3),
        ValueError,
        "chunk_size=3 must divide",
    ),
    "chunk_size zero": Case(
        lambda: jmeta.meta_gradient(LEARNER, THETA, tasks(4), KEY, chunk_size=0),
        ValueError,
        "chunk_size must be >= 1",
    ),
    "keys per task wrong count": Case(
        lambda: jmeta.meta_gradient(LEARNER, THETA, tasks(4), jax.random.split(KEY, 3)),
        ValueError,
        r"key must be one PRNG key .* got shape \(3,\)",
    ),
    "key an int": Case(
        lambda: jmeta.meta_gradient(LEARNER, THETA, tasks(4), 0),
        TypeError,
        "key must be a PRNG key",
    ),
    "key a float array": Case(
        lambda: jmeta.meta_gradient(LEARNER, THETA, tasks(4), jnp.zeros(2)),
        TypeError,
        "key must be a PRNG key",
    ),
    "evaluate_tasks key": Case(
        lambda: jmeta.evaluate_tasks(LEARNER, THETA, tasks(4), "seed"),
        TypeError,
        "key must be a PRNG key",
    ),
    "jit_step of an update function": Case(
        lambda: jmeta.jit_step(STEP(optax.sgd(0.1)).update),
        TypeError,
        "step must be a jmeta.MetaTrainStep",
    ),
    "evaluate batch not split over the mesh": Case(
        lambda: jmeta.evaluate(
            LEARNER,
            THETA,
            jmeta.tasks.sinusoid,
            num_tasks=8,
            batch_size=12,
            mesh=jmeta.parallel.task_mesh(),
        ),
        ValueError,
        "batch_size=12 must be a multiple of the 8 devices of mesh",
    ),
    "scan_steps num_steps": Case(
        lambda: jmeta.scan_steps(STEP(optax.sgd(0.1)), lambda k, d: tasks(4), 0),
        ValueError,
        "num_steps must be >= 1",
    ),
    "adapt num_steps negative": Case(
        lambda: LEARNER.adapt(THETA, regression_task().support, None, -1),
        ValueError,
        "num_steps must be >= 0",
    ),
    "evaluate num_tasks": Case(
        lambda: jmeta.evaluate(LEARNER, THETA, jmeta.tasks.sinusoid, num_tasks=0),
        ValueError,
        "num_tasks must be >= 1",
    ),
    "sample_tasks batch_size": Case(
        lambda: jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, KEY, 0),
        ValueError,
        "batch_size must be >= 1",
    ),
    # --- tasks: shapes, ranks, dtypes, support/query mismatches ---------------------------
    "support/query feature shapes": Case(
        meta_loss(LEARNER, with_(regression_task(), "query", x=jnp.zeros((4, 2)))),
        ValueError,
        "task.support.x and task.query.x must have the same per-example shape",
    ),
    "support/query target shapes": Case(
        meta_loss(LEARNER, with_(regression_task(), "query", y=jnp.zeros((4, 2)))),
        ValueError,
        "task.support.y and task.query.y must have the same per-example shape",
    ),
    "x and y lengths": Case(
        meta_loss(LEARNER, with_(regression_task(), "support", y=jnp.zeros((3, 1)))),
        ValueError,
        "task.support.x and task.support.y must agree",
    ),
    "empty support": Case(
        meta_loss(LEARNER, regression_task(ns=0)), ValueError, "task.support is empty"
    ),
    "scalar targets": Case(
        meta_loss(LEARNER, with_(regression_task(), "support", y=jnp.zeros(()))),
        ValueError,
        r"task.support.y must be an array of shape \[n, ...\]",
    ),
    "support/query dtypes": Case(
        meta_loss(LEARNER, with_(regression_task(), "query", x=jnp.zeros((4, 1), jnp.int32))),
        TypeError,
        "task.support.x and task.query.x must have the same dtype",
    ),
    "not a Task": Case(
        meta_loss(LEARNER, (regression_task().support,) * 2), TypeError, "expected a jmeta.Task"
    ),
    "support not a Batch": Case(
        meta_loss(LEARNER, jmeta.Task((jnp.zeros((5, 1)),) * 2, regression_task().query)),
        TypeError,
        "task.support must be a jmeta.Batch",
    ),
    "unbatched task to the meta-step": Case(
        lambda: jmeta.meta_gradient(jmeta.protonet(embed_apply, shots=1), EMBED, clusters(), KEY),
        ValueError,
        r"tasks.support.y must be an array of shape \[tasks, n, ...\]",
    ),
    "ragged task axis": Case(
        lambda: jmeta.meta_gradient(LEARNER, THETA, tasks(2)._replace(query=tasks(1).query), KEY),
        ValueError,
        "same leading task axis",
    ),
    "adapt_params selects nothing": Case(
        meta_loss(maml(adapt_params=lambda path: "nope" in path), regression_task()),
        ValueError,
        "selects no parameter",
    ),
    "adapt_params mask structure": Case(
        meta_loss(maml(adapt_params={"head": True}), regression_task()),
        ValueError,
        "mask must have the structure of the parameters",
    ),
    # --- models ---------------------------------------------------------------------------
    "conv4 channels": Case(
        lambda: CONV_SUPPORT.apply(CONV_PARAMS, jnp.zeros((2, 16, 16, 3))),
        ValueError,
        r"conv4: expected x of shape .* channels",
    ),
    "conv4 rank": Case(
        lambda: CONV_SUPPORT.apply(CONV_PARAMS, jnp.zeros((16, 16, 1))),
        ValueError,
        "conv4: expected x .* rank 3",
    ),
    "conv4 reference shape": Case(
        lambda: CONV_SUPPORT.apply(
            CONV_PARAMS, jnp.zeros((2, *IMG)), reference=jnp.zeros((2, 8, 8, 1))
        ),
        ValueError,
        "conv4: expected reference of shape",
    ),
    "conv4 batch_norm": Case(
        lambda: conv4(5, batch_norm="batch"), ValueError, "batch_norm must be one of"
    ),
    "conv4 input too small": Case(lambda: conv4(5, input_shape=(8, 8, 1)), ValueError, "too small"),
    "conv4 num_classes": Case(lambda: conv4(0), ValueError, "num_classes must be positive"),
    "mlp input width": Case(
        lambda: mlp((2, 3)).apply(mlp((2, 3)).init(KEY), jnp.zeros((4, 3))),
        ValueError,
        r"mlp: expected x of shape \[n, 2\]",
    ),
    "mlp sizes": Case(lambda: mlp((3,)), ValueError, "mlp: sizes needs an input and an output"),
    "resnet12 channels": Case(
        lambda: resnet12(5, channels=()), ValueError, "resnet12: channels must name"
    ),
    "embedding rank": Case(
        meta_loss(
            jmeta.protonet(lambda p, x: embed_apply(p, x)[:, None], shots=1), clusters(), EMBED
        ),
        ValueError,
        r"embed_fn must return \[n, features\]",
    ),
    # --- labels: dtypes, ranges, ways and shots against the learner -----------------------
    "fractional labels": Case(
        lambda: cross_entropy(jnp.zeros((2, 3)), jnp.array([0.5, 1.0])),
        TypeError,
        "labels must be integer class indices",
    ),
    "one-class logits": Case(
        lambda: cross_entropy(jnp.zeros((2, 1)), jnp.array([0, 0])),
        ValueError,
        "at least 2 classes",
    ),
    "labels beyond the model's outputs": Case(
        meta_loss(maml(apply_fn=three_outputs, loss_fn=cross_entropy), clusters(ways=5), EMBED),
        ValueError,
        r"labels must lie in \[0, 3\) .* found labels in \[0, 4\]",
    ),
    "negative labels": Case(
        meta_loss(
            maml(apply_fn=three_outputs, loss_fn=cross_entropy),
            with_(clusters(ways=3), "query", y=-clusters(ways=3).query.y),
            EMBED,
        ),
        ValueError,
        r"labels must lie in \[0, 3\)",
    ),
    "mse shapes": Case(
        lambda: mse(jnp.zeros((3, 1)), jnp.zeros((3,))), ValueError, "mse: predictions have shape"
    ),
    "metric learner fractional labels": Case(
        meta_loss(
            jmeta.protonet(embed_apply, num_classes=5),
            jax.tree.map(lambda a: a + 0.5 if a.dtype == jnp.int32 else a, clusters()),
            EMBED,
        ),
        TypeError,
        "support.y must be integer class labels",
    ),
    "num_classes below the labels": Case(
        meta_loss(jmeta.protonet(embed_apply, num_classes=5), clusters(ways=10), EMBED),
        ValueError,
        r"support.y must lie in \[0, 5\)",
    ),
    "num_classes above the support size": Case(
        meta_loss(jmeta.protonet(embed_apply, num_classes=6), clusters(ways=5), EMBED),
        ValueError,
        "num_classes=6 but the support set has 5 examples",
    ),
    "num_classes with an empty class": Case(
        meta_loss(jmeta.matching_net(embed_apply, num_classes=4), clusters(ways=3, shots=2), EMBED),
        ValueError,
        r"support.y must give each of the 4 classes at least one",
    ),
    "shots larger than the task's": Case(
        meta_loss(jmeta.protonet(embed_apply, shots=5), clusters(ways=5, shots=1), EMBED),
        ValueError,
        "shots=5 with 5 support examples gives 1 class",
    ),
    "shots smaller than the task's": Case(
        meta_loss(jmeta.protonet(embed_apply, shots=2), clusters(ways=4, shots=3), EMBED),
        ValueError,
        r"support.y must give each of the 6 classes exactly shots=2 .* \[3, 3, 3, 3, 0, 0\]",
    ),
    "support not a multiple of shots": Case(
        meta_loss(jmeta.r2d2(embed_apply, shots=2), clusters(ways=5, shots=1), EMBED),
        ValueError,
        "support has 5 examples, not a multiple of shots=2",
    ),
    "query labels beyond the classes": Case(
        meta_loss(
            jmeta.protonet(embed_apply, shots=1),
            with_(clusters(ways=3), "query", y=clusters(ways=3).query.y + 1),
            EMBED,
        ),
        ValueError,
        r"task.query.y must lie in \[0, 3\)",
    ),
    "ways beyond the data set's classes": Case(
        lambda: jmeta.tasks.few_shot(
            KEY, jnp.zeros((3, 4, *IMG), jnp.uint8), ways=5, shots=1, queries=1
        ),
        ValueError,
        "ways=5 needs 5 distinct classes",
    ),
    "shots and queries beyond the examples": Case(
        lambda: jmeta.tasks.few_shot(
            KEY, jnp.zeros((6, 4, *IMG), jnp.uint8), ways=5, shots=2, queries=3
        ),
        ValueError,
        "only 4 examples per class",
    ),
    "evaluate on tasks that do not fit": Case(
        lambda: jmeta.evaluate(
            jmeta.protonet(embed_apply, num_classes=3),
            jmeta.protonet(embed_apply, num_classes=3).init(EMBED),
            functools.partial(clusters_task, ways=4, shots=1, queries=1),
            num_tasks=4,
        ),
        ValueError,
        "sample_task gave 4 of 4 tasks whose labels do not fit the learner",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_input(case):
    with pytest.raises(case.error, match=case.match):
        case.call()


def test_the_module_covers_the_kinds_the_audit_lists():
    assert len(CASES) >= 57
