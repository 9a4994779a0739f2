"""Every conv_impl computes the same function as conv_impl="xla" (``lax.conv``).

Checked on the convolution itself (values; first- and second-order derivatives,
forward and reverse mode, in float32 and float64; under ``vmap`` with shared and
with per-task kernels, nested, and inside ``shard_map``) for every form a
platform may choose (:data:`jmeta.models._conv.FORMS`), and on whole networks
(logits; the second-order MAML meta-gradient with per-task, vmapped, adapted
weights). Also: what ``conv_impl="auto"`` picks on this CPU is what
:mod:`jmeta.models` documents.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

import jmeta.models
from jmeta.models import conv4, resnet12
from jmeta.models._conv import FORMS, Forms, conv2d_adaptive
from jmeta.models._layers import auto_conv_impl, conv2d

IMPLS = ("im2col", "adaptive")
# Forms of the adaptive primitive, whichever platform would choose them: each option once
# (the test images have 2 or 3 channels, so taps_below=4 computes them all as taps).
ALL_FORMS = [
    Forms(conv="xla", kernel_grad="xla", task_conv="loop-xla", task_kernel_grad="loop-im2col"),
    Forms(conv="im2col", kernel_grad="im2col", task_conv="im2col", task_kernel_grad="im2col"),
    Forms(conv="xla", kernel_grad="im2col", task_conv="xla", task_kernel_grad="loop-xla"),
    Forms(conv="im2col", kernel_grad="xla", task_conv="loop-im2col", task_kernel_grad="xla"),
    Forms(conv="xla", kernel_grad="xla", task_conv="im2col", task_kernel_grad="im2col",
          taps_below=4),
]  # fmt: skip


@pytest.fixture(params=ALL_FORMS, ids=lambda f: "-".join(map(str, f)))
def cpu_forms(request, monkeypatch):
    """Makes this CPU compute the adaptive convolution in the given forms."""
    monkeypatch.setitem(FORMS, "cpu", request.param)
    return request.param


def reference(x, kernel):
    return conv2d(x, kernel, "xla")


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def adapted_logits(model, params, support, support_y, query):
    """Query logits after one SGD step of size 0.4 on the support loss."""
    grads = jax.grad(lambda p: cross_entropy(model.apply(p, support), support_y))(params)
    adapted = jax.tree.map(lambda p, g: p - 0.4 * g, params, grads)
    return model.apply(adapted, query, reference=support)


def meta_step(model, params, batch):
    """Per-task adapted query logits, and the second-order MAML meta-gradient."""

    def meta_loss(p):
        logits = jax.vmap(lambda *task: adapted_logits(model, p, *task))(*batch[:3])
        return jnp.mean(jax.vmap(cross_entropy)(logits, batch[3])), logits

    grads, logits = jax.grad(meta_loss, has_aux=True)(params)
    return logits, grads


def normal(seed, shape, dtype=jnp.float32):
    """Standard-normal test data from numpy (jax.random compiles per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def random_tasks(num_tasks, shape):
    """Support (3 examples) and query (6 examples) of 3-way tasks."""
    rng = np.random.default_rng(1)
    return (
        jnp.asarray(rng.standard_normal((num_tasks, 3, *shape), np.float32)),
        jnp.asarray(rng.integers(0, 3, (num_tasks, 3))),
        jnp.asarray(rng.standard_normal((num_tasks, 6, *shape), np.float32)),
        jnp.asarray(rng.integers(0, 3, (num_tasks, 6))),
    )


def assert_trees_close(actual, desired, tol):
    """Leaf-wise closeness, relative to each leaf's largest entry."""

    def check(a, d):
        np.testing.assert_allclose(a, d, rtol=0, atol=tol * max(float(jnp.max(jnp.abs(d))), 1e-3))

    jax.tree.map(check, actual, desired)


def derivatives(conv, loss_of_output, args):
    """Gradient, Hessian-vector product (forward over reverse) and the gradient of a
    function of the gradient (reverse over reverse) of ``loss_of_output(conv(*args))``."""

    def loss(*a):
        return loss_of_output(conv(*a))

    grad = jax.grad(loss, argnums=(0, 1))
    hvp = jax.jvp(lambda *a: grad(*a), args, tuple(jnp.ones_like(a) for a in args))[1]
    grad_of_grad = jax.grad(lambda *a: sum(jnp.sum(g**3) for g in grad(*a)), argnums=(0, 1))
    return grad(*args), hvp, grad_of_grad(*args)


def sin_squares(y):
    return jnp.sum(jnp.sin(y) ** 2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 5])
def test_conv2d_values_match(impl, kernel_size):
    x = normal(0, (2, 7, 6, 3))
    kernel = normal(1, (kernel_size, kernel_size, 3, 4))
    np.testing.assert_allclose(conv2d(x, kernel, impl), reference(x, kernel), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("x64", [False, True])
def test_conv2d_derivatives_match(impl, x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        x = normal(0, (2, 6, 5, 3), dtype)
        kernel = normal(1, (3, 3, 3, 3), dtype) / 3

        def twice(conv):
            return lambda x, kernel: conv(jnp.sin(conv(x, kernel)), kernel)

        ours = jax.jit(
            lambda x, k: derivatives(twice(lambda a, b: conv2d(a, b, impl)), sin_squares, (x, k))
        )
        theirs = jax.jit(lambda x, k: derivatives(twice(reference), sin_squares, (x, k)))
        assert_trees_close(ours(x, kernel), theirs(x, kernel), 1e-12 if x64 else 1e-5)


# (in_axes of vmap, shapes of x and kernel): shared kernel, a kernel per task,
# shared images; an even, non-square kernel checks the padding of the transposes.
VMAPS = [
    ((0, None), (3, 2, 5, 6, 3), (2, 4, 3, 4)),
    ((0, 0), (3, 2, 5, 6, 3), (3, 2, 4, 3, 4)),
    ((None, 0), (2, 5, 6, 3), (3, 3, 3, 3, 4)),
]


@pytest.mark.parametrize("in_axes, x_shape, k_shape", VMAPS, ids=["shared", "per-task", "shared-x"])
def test_adaptive_under_vmap_matches_xla(cpu_forms, x64, in_axes, x_shape, k_shape):
    x, kernel = normal(0, x_shape, jnp.float64), normal(1, k_shape, jnp.float64) / 3

    def run(conv):
        batched = jax.vmap(conv, in_axes)
        return batched(x, kernel), derivatives(batched, sin_squares, (x, kernel))

    assert_trees_close(jax.jit(lambda: run(conv2d_adaptive))(), run(reference), 1e-12)


NESTED = [  # (outer in_axes, inner in_axes, x shape, kernel shape)
    ((0, 0), (0, 0), (2, 3, 2, 5, 5, 2), (2, 3, 3, 3, 2, 3)),
    ((0, None), (0, 0), (2, 3, 2, 5, 5, 2), (3, 3, 3, 2, 3)),
    ((0, 0), (None, 0), (2, 2, 5, 5, 2), (2, 3, 3, 3, 2, 3)),
]


@pytest.mark.parametrize("outer, inner, x_shape, k_shape", NESTED)
def test_adaptive_under_nested_vmap_matches_xla(cpu_forms, x64, outer, inner, x_shape, k_shape):
    x, kernel = normal(0, x_shape, jnp.float64), normal(1, k_shape, jnp.float64) / 3

    def run(conv):
        batched = jax.vmap(jax.vmap(conv, inner), outer)
        grad = jax.grad(lambda x, k: sin_squares(batched(x, k)), argnums=(0, 1))
        return batched(x, kernel), grad(x, kernel)

    assert_trees_close(jax.jit(lambda: run(conv2d_adaptive))(), run(reference), 1e-12)


def test_adaptive_maml_meta_gradient_matches_xla(cpu_forms, x64):
    """Inner step on the support set (shared kernel), query at per-task adapted kernels."""

    def meta_gradient(conv):
        def task_loss(kernel, support, query):
            inner = jax.grad(lambda k: jnp.sum(jnp.tanh(conv(support, k)) ** 2))(kernel)
            return jnp.sum(jnp.tanh(conv(query, kernel - 0.1 * inner)) ** 2)

        return jax.grad(lambda k, s, q: jnp.mean(jax.vmap(task_loss, (None, 0, 0))(k, s, q)))

    args = (normal(0, (3, 3, 2, 3), jnp.float64) / 3, normal(1, (4, 2, 5, 5, 2), jnp.float64),
            normal(2, (4, 3, 5, 5, 2), jnp.float64))  # fmt: skip
    assert_trees_close(
        jax.jit(meta_gradient(conv2d_adaptive))(*args), meta_gradient(reference)(*args), 1e-12
    )


def test_adaptive_inside_shard_map_matches_one_device():
    mesh = Mesh(np.array(jax.devices()[:2]), ("tasks",))
    x, kernels = normal(0, (4, 2, 5, 5, 2)), normal(1, (4, 3, 3, 2, 3)) / 3

    def loss(kernels, x):
        return jnp.sum(jnp.sin(jax.vmap(conv2d_adaptive)(x, kernels)) ** 2)

    sharded = jax.jit(
        jax.shard_map(
            jax.grad(loss),
            mesh=mesh,
            in_specs=(PartitionSpec("tasks"), PartitionSpec("tasks")),
            out_specs=PartitionSpec("tasks"),
        )
    )
    np.testing.assert_allclose(
        sharded(kernels, x), jax.grad(loss)(kernels, x), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_conv4_vmapped_second_order(impl):
    # Without batch norm, which does not depend on conv_impl: a smaller graph
    # to compile.
    kwargs = dict(channels=4, input_shape=(16, 16, 1), batch_norm="none")
    xla, ours = conv4(3, conv_impl="xla", **kwargs), conv4(3, conv_impl=impl, **kwargs)
    params = xla.init(jax.random.key(0))
    batch = random_tasks(2, (16, 16, 1))
    # Low backend optimisation halves the compile time of these small graphs.
    step = jax.jit(
        meta_step, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
    )
    logits_ours, grads_ours = step(ours, params, batch)
    logits_xla, grads_xla = step(xla, params, batch)
    np.testing.assert_allclose(logits_ours, logits_xla, rtol=1e-5, atol=1e-5)
    assert_trees_close(grads_ours, grads_xla, 5e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_resnet12_values_match(impl):
    kwargs = dict(channels=(2, 3, 4, 4), input_shape=(16, 16, 1))
    xla, ours = resnet12(3, conv_impl="xla", **kwargs), resnet12(3, conv_impl=impl, **kwargs)
    params = xla.init(jax.random.key(0))
    x = normal(1, (6, 16, 16, 1))
    np.testing.assert_allclose(
        jax.jit(ours.apply)(params, x), jax.jit(xla.apply)(params, x), rtol=1e-5, atol=1e-5
    )


# ----------------------------------------------------------------------------- what "auto" picks


def test_auto_is_adaptive_on_cpu_and_im2col_elsewhere():
    assert jax.default_backend() == "cpu"
    assert auto_conv_impl() == auto_conv_impl("cpu") == "adaptive"
    assert auto_conv_impl("gpu") == auto_conv_impl("cuda") == auto_conv_impl("tpu") == "im2col"


def test_cpu_forms_are_the_documented_ones():
    """jmeta.models' docstring states the CPU forms; this keeps it true."""
    assert FORMS["cpu"] == Forms(conv="xla", kernel_grad="xla", task_conv="loop-xla",
                                 task_kernel_grad="loop-im2col", taps_below=4)  # fmt: skip
    assert FORMS["default"] == Forms(conv="xla", kernel_grad="xla", task_conv="im2col",
                                     task_kernel_grad="im2col")  # fmt: skip
    doc = " ".join(jmeta.models.__doc__.split())
    assert "on CPU" in doc and "one ``lax.conv`` per task in a sequential loop" in doc


def test_auto_maml_step_uses_one_convolution_per_sharing_pattern():
    """conv4's default on CPU: shared kernels give plain convolutions, per-task
    kernels a task axis, which the CPU computes one task after another."""
    model = conv4(3, channels=4, input_shape=(16, 16, 1), batch_norm="none")  # conv_impl="auto"
    params = model.init(jax.random.key(0))
    batch = random_tasks(2, (16, 16, 1))
    jaxpr = jax.make_jaxpr(lambda p, b: meta_step(model, p, b))(params, batch)
    text = str(jaxpr)
    assert "jmeta_conv2d[" in text and "jmeta_conv2d_kernel_grad[" in text
    batch_dims = {int(d) for d in re.findall(r"batch_dims=(\d+)", text)}
    assert batch_dims == {0, 1}  # shared kernels and per-task kernels
    hlo = jax.jit(lambda p, b: meta_step(model, p, b)).lower(params, batch).as_text()
    assert "while" in hlo  # the per-task loop
    assert "convolution" in hlo


def test_shared_kernel_has_no_task_axis():
    kernel = normal(1, (3, 3, 2, 3))
    jaxpr = jax.make_jaxpr(jax.vmap(conv2d_adaptive, (0, None)))(normal(0, (4, 2, 5, 5, 2)), kernel)
    assert re.findall(r"batch_dims=(\d+)", str(jaxpr)) == ["0"]


# ----------------------------------------------------------------------------- bad input


def test_adaptive_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match="conv2d: x is float32 but kernel is bfloat16"):
        conv2d_adaptive(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 3), jnp.bfloat16))


def test_adaptive_rejects_mismatched_channels():
    with pytest.raises(ValueError, match=r"conv2d: expected x \[n, H, W, C\] and kernel"):
        conv2d_adaptive(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 5, 3)))
