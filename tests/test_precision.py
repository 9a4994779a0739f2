"""Mixed precision: bf16 compute, float32 parameters, gradients and losses; finite 2nd order."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy import mlp_apply, mlp_init

import jmeta
from jmeta.precision import cast_floating, mixed_precision


def test_model_computes_in_bf16_and_returns_float32():
    seen = {}

    def apply(params, x, reference=None):
        seen.update(params=params["head"]["kernel"].dtype, x=x.dtype, reference=reference.dtype)
        return mlp_apply(params, x)

    wrapped = mixed_precision(apply)
    params, x = mlp_init(jax.random.key(0)), jnp.ones((3, 1))
    out = wrapped(params, x, reference=x)
    assert seen == dict(params=jnp.bfloat16, x=jnp.bfloat16, reference=jnp.bfloat16)
    assert out.dtype == jnp.float32
    grads = jax.grad(lambda p: wrapped(p, x, reference=x).sum())(params)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_cast_floating_leaves_integers_and_keys_alone():
    tree = {"f": jnp.ones(2), "i": jnp.arange(2), "k": jax.random.key(0), "n": np.ones(2), "s": 1.0}
    out = cast_floating(tree, jnp.bfloat16)
    assert out["f"].dtype == out["n"].dtype == jnp.bfloat16
    assert out["i"].dtype == jnp.int32 and out["k"] is tree["k"] and out["s"] == 1.0


def test_bf16_meta_gradient_is_float32_and_close_to_float32():
    tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(1), 4)
    theta = mlp_init(jax.random.key(0), sizes=(1, 40, 40, 1))

    def grad(apply):
        lr = jmeta.maml(apply, jmeta.losses.mse, inner_lr=0.01, num_steps=2)
        adapted = jax.jit(jax.vmap(lr.adapt, in_axes=(None, 0)))(theta, tasks.support)
        assert {a.dtype for a in jax.tree.leaves(adapted)} == {jnp.dtype(jnp.float32)}
        return jax.jit(lambda t: jmeta.meta_gradient(lr, t, tasks, jax.random.key(2)))(theta)

    (g32, m32), (g16, m16) = grad(mlp_apply), grad(mixed_precision(mlp_apply))
    assert {g.dtype for g in jax.tree.leaves(g16)} == {jnp.dtype(jnp.float32)}
    np.testing.assert_allclose(m16["loss"], m32["loss"], rtol=3e-2)
    flat32, flat16 = (jnp.concatenate([g.ravel() for g in jax.tree.leaves(g)]) for g in (g32, g16))
    cosine = flat32 @ flat16 / (jnp.linalg.norm(flat32) * jnp.linalg.norm(flat16))
    assert cosine > 0.99, cosine


@pytest.mark.standard_promotion  # optax.adam
def test_hundreds_of_second_order_bf16_steps_stay_finite_and_learn():
    apply = mixed_precision(lambda p, x: mlp_apply(p, x, jax.nn.relu))
    lr = jmeta.maml(apply, jmeta.losses.mse, inner_lr=0.01, num_steps=2)
    step = jmeta.meta_train_step(lr, optax.adam(3e-3))
    sample = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 10)
    state = step.init(mlp_init(jax.random.key(0), sizes=(1, 40, 40, 1)))
    state, metrics = jmeta.scan_steps(step, sample, 300)(state, jax.random.key(1))
    assert bool(metrics["finite"].all()) and int(state.step) == 300
    for name in ("loss", "grad_norm", "inner_loss_first", "inner_loss_last"):
        assert np.isfinite(metrics[name]).all(), name
    assert metrics["loss"][-50:].mean() < 0.8 * metrics["loss"][:50].mean()
    assert {p.dtype for p in jax.tree.leaves(state.meta_params)} == {jnp.dtype(jnp.float32)}


# --- jmeta's own models compute in bfloat16 under mixed_precision -------------------------

BUILT_IN = {
    "mlp": (lambda: jmeta.models.mlp((3, 8, 8, 2)), (4, 3)),
    "conv4 im2col": (
        lambda: jmeta.models.conv4(3, channels=4, input_shape=(16, 16, 1), conv_impl="im2col"),
        (4, 16, 16, 1),
    ),
    "conv4 adaptive": (
        lambda: jmeta.models.conv4(3, channels=4, input_shape=(16, 16, 1), conv_impl="adaptive"),
        (4, 16, 16, 1),
    ),
    "conv4 xla": (
        lambda: jmeta.models.conv4(3, channels=4, input_shape=(16, 16, 1), conv_impl="xla"),
        (4, 16, 16, 1),
    ),
    "conv4 support": (
        lambda: jmeta.models.conv4(None, channels=4, input_shape=(16, 16, 1), batch_norm="support"),
        (4, 16, 16, 1),
    ),
    "resnet12": (
        lambda: jmeta.models.resnet12(3, channels=(2, 3, 4, 4), input_shape=(16, 16, 1)),
        (4, 16, 16, 1),
    ),
}
# jmeta_conv2d*: conv_impl="adaptive"'s convolution and its kernel gradient (jmeta.models._conv).
MATMULS = ("dot_general", "conv_general_dilated", "jmeta_conv2d", "jmeta_conv2d_kernel_grad")


def matmul_input_dtypes(jaxpr):
    """The input dtypes of every matrix product and convolution in ``jaxpr`` and its sub-jaxprs."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in MATMULS:
            found.append({str(v.aval.dtype) for v in eqn.invars})
        for value in eqn.params.values():
            for inner in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(inner, "jaxpr", inner)  # a ClosedJaxpr's Jaxpr
                if hasattr(inner, "eqns"):
                    found += matmul_input_dtypes(inner)
    return found


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_models_compute_in_bf16_with_float32_params_and_grads(name):
    build, shape = BUILT_IN[name]
    model = build()
    params = model.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
    apply = mixed_precision(model.apply)

    def loss(p):
        return jnp.sum(apply(p, x) ** 2)

    forward = matmul_input_dtypes(jax.make_jaxpr(apply)(params, x).jaxpr)
    assert forward and all(d == {"bfloat16"} for d in forward), forward
    backward = matmul_input_dtypes(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
    assert len(backward) > len(forward) and all(d == {"bfloat16"} for d in backward), backward
    # Unwrapped, the same model computes in float32; the two agree to bfloat16 precision.
    unwrapped = matmul_input_dtypes(jax.make_jaxpr(model.apply)(params, x).jaxpr)
    assert all(d == {"float32"} for d in unwrapped), unwrapped
    grads = jax.eval_shape(jax.grad(loss), params)  # the float32 master gradients
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    low, full = jax.jit(lambda p: (apply(p, x), model.apply(p, x)))(params)
    assert low.dtype == jnp.float32
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    np.testing.assert_allclose(low, full, rtol=0.1, atol=0.1 * float(np.abs(full).max()))


def test_a_learner_on_a_wrapped_conv4_meta_learns_float32_from_bf16_compute():
    model = jmeta.models.conv4(3, channels=4, input_shape=(16, 16, 1), batch_norm="support")
    learner = jmeta.maml(mixed_precision(model.apply), jmeta.losses.cross_entropy, inner_lr=0.1)
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(1)
    task = jmeta.Task(
        jmeta.Batch(jnp.asarray(rng.random((3, 16, 16, 1)), jnp.float32), jnp.arange(3)),
        jmeta.Batch(jnp.asarray(rng.random((6, 16, 16, 1)), jnp.float32), jnp.arange(6) % 3),
    )
    meta_grad = jax.grad(lambda p: learner.meta_loss(p, task)[0])
    dtypes = matmul_input_dtypes(jax.make_jaxpr(meta_grad)(params).jaxpr)
    assert dtypes and all(d == {"bfloat16"} for d in dtypes), dtypes
    shapes = jax.eval_shape(meta_grad, params)
    assert {g.dtype for g in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
