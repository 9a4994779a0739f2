"""Meta-steps: vmap equals a loop, jit equals no jit, no retracing, NaN safety, learning."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy import mlp_apply, mlp_init

import jmeta

SAMPLE = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 4)


def learner():
    return jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.05, num_steps=2)


def test_vmapped_meta_gradient_equals_python_loop_over_tasks():
    lr = learner()
    theta = mlp_init(jax.random.key(0))
    tasks = SAMPLE(jax.random.key(1))
    key = jax.random.key(2)
    grads, metrics = jmeta.meta_gradient(lr, theta, tasks, key)
    keys = jax.random.split(key, 4)
    # One task at a time (each compiled once, then called per task; eager dispatch is slow).
    task_grad = jax.jit(jax.grad(lambda t, task, k: lr.meta_loss(t, task, k)[0]))
    task_loss = jax.jit(lambda t, task: lr.meta_loss(t, task)[0])
    task = [jax.tree.map(lambda a, i=i: a[i], tasks) for i in range(4)]
    per_task = [task_grad(theta, task[i], keys[i]) for i in range(4)]
    looped = jax.tree.map(lambda *g: sum(g) / 4, *per_task)
    chex.assert_trees_all_close(grads, looped, rtol=1e-5, atol=1e-7)
    losses = [task_loss(theta, task[i]) for i in range(4)]
    np.testing.assert_allclose(metrics["loss"], np.mean(losses), rtol=1e-6)


def test_jit_equals_no_jit_and_no_retrace():
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    traces = []

    def counted(state, tasks, key):
        traces.append(1)
        return step.update(state, tasks, key)

    state = step.init(mlp_init(jax.random.key(0)))
    tasks = SAMPLE(jax.random.key(1))
    eager, eager_metrics = step.update(state, tasks, jax.random.key(2))
    compiled = jax.jit(counted, donate_argnums=0)
    jitted, metrics = compiled(step.init(mlp_init(jax.random.key(0))), tasks, jax.random.key(2))
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(eager_metrics["loss"], metrics["loss"], rtol=1e-6)
    for i in range(3):
        jitted, metrics = compiled(jitted, SAMPLE(jax.random.key(10 + i)), jax.random.key(i))
    assert len(traces) == 1
    assert int(jitted.step) == 4
    assert metrics["loss"].dtype == jnp.float32 and metrics["loss"].shape == ()


def test_state_dtypes_and_shapes_are_stable():
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    state = step.init(mlp_init(jax.random.key(0)))
    before = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    state, _ = jmeta.jit_step(step)(state, SAMPLE(jax.random.key(1)), jax.random.key(2))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), state) == before


def test_nonfinite_step_leaves_the_state_unchanged():
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    state = step.init(mlp_init(jax.random.key(0)))
    tasks = SAMPLE(jax.random.key(1))
    bad = tasks._replace(query=tasks.query._replace(y=tasks.query.y.at[0, 0, 0].set(jnp.nan)))
    new, metrics = jax.jit(step.update)(state, bad, jax.random.key(2))
    assert not bool(metrics["finite"])
    chex.assert_trees_all_equal(new, state)
    unguarded = jmeta.meta_train_step(learner(), optax.sgd(1e-2), skip_nonfinite=False)
    new, _ = jax.jit(unguarded.update)(state, bad, jax.random.key(2))
    assert not np.isfinite(np.asarray(new.meta_params["head"]["bias"])).all()


def test_scan_steps_equals_repeated_single_steps_and_any_chunking():
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    key = jax.random.key(5)
    scanned, metrics = jmeta.scan_steps(step, SAMPLE, 4)(
        step.init(mlp_init(jax.random.key(0))), key
    )
    state = step.init(mlp_init(jax.random.key(0)))
    single = jax.jit(step.update)
    for s in range(4):
        task_key, step_key = jax.random.split(jax.random.fold_in(key, s))
        state, _ = single(state, SAMPLE(task_key), step_key)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), scanned, state
    )
    assert metrics["loss"].shape == (4,)
    run2 = jmeta.scan_steps(step, SAMPLE, 2)
    chunked, _ = run2(*[step.init(mlp_init(jax.random.key(0))), key])
    chunked, _ = run2(chunked, key)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), scanned, chunked
    )


@pytest.mark.standard_promotion  # optax.adam
@pytest.mark.parametrize(
    "builder, inner_lr",
    [(jmeta.maml, 0.01), (jmeta.fomaml, 0.01), (jmeta.meta_sgd, 0.01), (jmeta.anil, 0.1)],
)
def test_sinusoid_meta_loss_falls(builder, inner_lr):
    model_params = mlp_init(jax.random.key(0), sizes=(1, 40, 40, 1))
    lr = builder(lambda p, x: mlp_apply(p, x, jax.nn.relu), jmeta.losses.mse, inner_lr=inner_lr)
    step = jmeta.meta_train_step(lr, optax.adam(3e-3))
    sample = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 25)
    run = jmeta.scan_steps(step, sample, 100)
    state = step.init(lr.init(model_params))
    losses = []
    for i in range(3):
        state, metrics = run(state, jax.random.key(i))
        losses.append(float(metrics["loss"].mean()))
    assert losses[-1] < 0.75 * losses[0], losses


def test_evaluate_tasks_per_task_metrics():
    lr = learner()
    out = jmeta.evaluate_tasks(
        lr, mlp_init(jax.random.key(0)), SAMPLE(jax.random.key(1)), jax.random.key(2), num_steps=5
    )
    assert out["loss"].shape == (4,) and out["loss_before"].shape == (4,)


def test_chunked_meta_gradient_equals_unchunked():
    lr = jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.05, num_steps=2, remat=True)
    theta = mlp_init(jax.random.key(0))
    tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(1), 8)
    grad = jax.jit(
        lambda p, t, k, c: jmeta.meta_gradient(lr, p, t, k, chunk_size=c), static_argnums=3
    )
    expected = grad(theta, tasks, jax.random.key(2), None)
    for chunk_size in (1, 4):
        actual = grad(theta, tasks, jax.random.key(2), chunk_size)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), actual, expected
        )


def test_chunked_meta_train_step_equals_unchunked():
    plain = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    chunked = jmeta.meta_train_step(learner(), optax.sgd(1e-2), chunk_size=2)
    tasks, key = SAMPLE(jax.random.key(1)), jax.random.key(2)
    expected, expected_metrics = jax.jit(plain.update)(
        plain.init(mlp_init(jax.random.key(0))), tasks, key
    )
    state, metrics = jax.jit(chunked.update)(chunked.init(mlp_init(jax.random.key(0))), tasks, key)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), state, expected
    )
    assert set(metrics) == set(expected_metrics)
    for name in metrics:
        np.testing.assert_allclose(metrics[name], expected_metrics[name], rtol=1e-6)


def test_chunk_size_must_divide_the_meta_batch():
    theta, tasks = mlp_init(jax.random.key(0)), SAMPLE(jax.random.key(1))
    with pytest.raises(ValueError, match=r"chunk_size=3 must divide .* 4"):
        jmeta.meta_gradient(learner(), theta, tasks, jax.random.key(2), chunk_size=3)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        jmeta.meta_gradient(learner(), theta, tasks, jax.random.key(2), chunk_size=0)


def test_one_key_per_task_equals_one_key_split():
    lr = learner()
    theta, tasks, key = mlp_init(jax.random.key(0)), SAMPLE(jax.random.key(1)), jax.random.key(2)
    loss, _ = jmeta.batched_meta_loss(lr, theta, tasks, key)
    per_task, _ = jmeta.batched_meta_loss(lr, theta, tasks, jax.random.split(key, 4))
    assert loss == per_task
    raw, _ = jmeta.batched_meta_loss(lr, theta, tasks, jax.random.PRNGKey(2))
    assert np.isfinite(raw)
    with pytest.raises(ValueError, match=r"one per task \(shape \(4,\)"):
        jmeta.batched_meta_loss(lr, theta, tasks, jax.random.split(key, 3))


def test_compiled_steps_leave_the_callers_parameters_alive():
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    theta = mlp_init(jax.random.key(0))
    state = step.init(theta)
    jmeta.jit_step(step)(state, SAMPLE(jax.random.key(1)), jax.random.key(2))
    assert np.isfinite(np.asarray(theta["head"]["kernel"])).all()  # not deleted by donation


def test_grad_norm_and_finite_check_are_exact():
    from jmeta.step import _norm_and_finite

    tree = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}
    norm, finite = jax.jit(_norm_and_finite)(tree)
    np.testing.assert_allclose(norm, 5.0)
    assert bool(finite)
    # Finite values whose squares overflow: the norm is inf but the step is finite.
    norm, finite = _norm_and_finite({"a": jnp.array([3e38, 1.0])})
    assert bool(finite) and not np.isfinite(norm)
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        _, finite = _norm_and_finite({"a": jnp.array([1.0, bad]), "b": jnp.ones(3)})
        assert not bool(finite)
    norm, finite = _norm_and_finite({})
    assert float(norm) == 0.0 and bool(finite)
    # Leaves of different dtypes (strict promotion is on in the tests).
    mixed = {"a": jnp.array([3.0], jnp.bfloat16), "b": jnp.array([4.0, jnp.inf], jnp.float32)}
    norm, finite = _norm_and_finite({"a": mixed["a"], "b": mixed["b"][:1]})
    np.testing.assert_allclose(norm, 5.0)
    assert bool(finite) and not bool(_norm_and_finite(mixed)[1])


def test_nonfinite_gradient_with_finite_loss_is_skipped():
    # An infinite support target makes the inner step, and so the meta-gradient,
    # non-finite: the state, counter included, is left as it was.
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    state = step.init(mlp_init(jax.random.key(0)))
    tasks = SAMPLE(jax.random.key(1))
    bad = tasks._replace(support=tasks.support._replace(y=tasks.support.y.at[0, 0, 0].set(jnp.inf)))
    new, metrics = jax.jit(step.update, donate_argnums=0)(
        step.init(mlp_init(jax.random.key(0))), bad, jax.random.key(2)
    )
    assert not bool(metrics["finite"])
    chex.assert_trees_all_equal(new, state)
    assert int(new.step) == 0


@pytest.mark.parametrize("num_steps", [1, 3])
def test_inner_loss_metrics_and_gradient_for_one_and_several_inner_steps(num_steps):
    # The inner loop runs its first step outside its scan (shared parameters under
    # vmap): the batched gradient still equals a loop over tasks, and the metrics
    # report the support loss before the first and the last inner step.
    lr = jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.05, num_steps=num_steps)
    theta, tasks, key = mlp_init(jax.random.key(0)), SAMPLE(jax.random.key(1)), jax.random.key(2)
    grads, metrics = jax.jit(lambda p: jmeta.meta_gradient(lr, p, tasks, key))(theta)
    per_task = [
        jax.grad(lambda t, i=i: lr.meta_loss(t, jax.tree.map(lambda a: a[i], tasks))[0])(theta)
        for i in range(4)
    ]
    looped = jax.tree.map(lambda *g: sum(g) / 4, *per_task)
    chex.assert_trees_all_close(grads, looped, rtol=1e-5, atol=1e-7)
    result = jax.vmap(
        lambda t: jmeta.inner_loop(
            lambda p: jmeta.losses.mse(mlp_apply(p, t.support.x), t.support.y),
            theta,
            optax.sgd(0.05),
            num_steps,
        )
    )(tasks)
    assert result.losses.shape == (4, num_steps)
    np.testing.assert_allclose(metrics["inner_loss_first"], result.losses[:, 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["inner_loss_last"], result.losses[:, -1].mean(), rtol=1e-5)
