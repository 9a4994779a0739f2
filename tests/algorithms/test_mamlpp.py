"""MAML++: each option against a hand-written float64 reference of its math."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import jmeta
from jmeta.algorithms.mamlpp import (
    MamlppParams,
    count_meta_steps,
    is_batch_norm,
    mamlpp,
    multi_step_weights,
)


def half_mse(pred, y):
    return 0.5 * jnp.mean(jnp.sum((pred - y) ** 2, axis=-1))


def linear_task(rng, n=6, m=5, d=3):
    xs, xq = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    ys, yq = rng.normal(size=(n, 1)), rng.normal(size=(m, 1))
    return jmeta.Task(jmeta.Batch(xs, ys), jmeta.Batch(xq, yq))


def reference_weights(k, epoch, anneal):
    """The paper's importance vector, written out from section 4 / the reference code."""
    w = np.full(k, 1.0 / k)
    decay, floor = 1.0 / k / anneal, 0.03 / k
    for i in range(k - 1):
        w[i] = max(w[i] - epoch * decay, floor)
    w[-1] = min(w[-1] + epoch * (k - 1) * decay, 1.0 - (k - 1) * floor)
    return w


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("epoch", [0, 1, 3, 9, 10, 40])
def test_multi_step_weights_match_the_paper(k, epoch):
    got = np.asarray(multi_step_weights(k, epoch, 10))
    np.testing.assert_allclose(got, reference_weights(k, epoch, 10), rtol=1e-6, atol=1e-7)


def closed_form(theta, lrs, task, weights, first_order):
    """Loss and gradients (theta, per-step step sizes) of the weighted multi-step query loss
    of linear regression, K steps phi_{k+1} = phi_k - a_k (A phi_k - b)."""
    xs, ys = task.support
    xq, yq = task.query
    n, m, d = len(xs), len(xq), len(theta)
    a_mat, b = xs.T @ xs / n, xs.T @ ys / n
    k_steps = len(lrs)
    phis, grads = [theta], []
    for k in range(k_steps):
        grads.append(a_mat @ phis[-1] - b)
        phis.append(phis[-1] - lrs[k] * grads[-1])
    outers = [xq.T @ (xq @ phis[k + 1] - yq) / m for k in range(k_steps)]
    loss = sum(
        weights[k] * 0.5 * np.mean(np.sum((xq @ phis[k + 1] - yq) ** 2, -1)) for k in range(k_steps)
    )

    def jac(lo, hi):  # d phi_hi / d phi_lo
        out = np.eye(d)
        if not first_order:
            for j in range(lo, hi):
                out = (np.eye(d) - lrs[j] * a_mat) @ out
        return out

    g_theta = sum(weights[k] * jac(0, k + 1).T @ outers[k] for k in range(k_steps))
    g_lrs = np.array(
        [
            sum(
                weights[i] * (outers[i].T @ jac(k + 1, i + 1) @ (-grads[k])).item()
                for i in range(k, k_steps)
            )
            for k in range(k_steps)
        ]
    )
    return loss, g_theta, g_lrs


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("epoch", [0, 2, 12])
def test_lslr_multi_step_loss_and_derivative_order_match_the_closed_form(x64, first_order, epoch):
    rng = np.random.default_rng(epoch)
    task_np = linear_task(rng)
    task = jax.tree.map(jnp.asarray, task_np)
    steps, per_epoch = 3, 4
    learner = mamlpp(
        lambda p, x: x @ p["w"], half_mse, inner_lr=0.3, num_steps=steps,
        multi_step_loss_epochs=10, first_order_epochs=100 if first_order else 0,
        steps_per_epoch=per_epoch,
    )  # fmt: skip
    theta = rng.normal(size=(3, 1))
    lrs = np.array([0.3, 0.1, 0.45])
    meta = MamlppParams({"w": jnp.asarray(theta)}, {"w": jnp.asarray(lrs)},
                        jnp.asarray(epoch * per_epoch + 1, jnp.float32))  # fmt: skip
    (loss, _), grads = jax.value_and_grad(lambda p: learner.meta_loss(p, task), has_aux=True)(meta)
    weights = reference_weights(steps, epoch, 10) if epoch < 10 else np.eye(steps)[-1]
    want_loss, want_theta, want_lrs = closed_form(theta, lrs, task_np, weights, first_order)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-10)
    np.testing.assert_allclose(grads.params["w"], want_theta, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(grads.inner_lrs["w"], want_lrs, rtol=1e-8, atol=1e-12)
    assert grads.progress == 0


def norm_apply(params, x):
    """A tiny net with a batch-norm layer named like jmeta's (``bn/scale``, ``bn/bias``)."""
    h = x @ params["dense"]["kernel"]
    h = (h - h.mean(0)) / jnp.sqrt(h.var(0) + 1e-5)
    h = jnp.tanh(h * params["bn"]["scale"] + params["bn"]["bias"])
    return h @ params["head"]["kernel"]


def test_per_step_batch_norm_weights_follow_the_step_index(x64):
    rng = np.random.default_rng(0)
    task = jax.tree.map(jnp.asarray, linear_task(rng, n=8, m=6, d=3))
    k_steps, lr = 3, 0.2
    params = {"dense": {"kernel": rng.normal(size=(3, 4))},
              "bn": {"scale": rng.normal(size=4), "bias": rng.normal(size=4)},
              "head": {"kernel": rng.normal(size=(4, 1))}}  # fmt: skip
    params = jax.tree.map(jnp.asarray, params)
    learner = mamlpp(norm_apply, half_mse, inner_lr=lr, num_steps=k_steps, learn_inner_lr=False,
                     multi_step_loss_epochs=0)  # fmt: skip
    meta = learner.init(params)
    assert meta.params["bn"]["scale"].shape == (k_steps, 4) and meta.inner_lrs is None
    copies = {"scale": jnp.asarray(rng.normal(size=(k_steps, 4))),
              "bias": jnp.asarray(rng.normal(size=(k_steps, 4)))}  # fmt: skip
    meta = meta._replace(params={**meta.params, "bn": copies})

    def reference(dense, head, bn, steps):
        """Step k uses copy min(k, K-1); only dense and head adapt; the query uses the last."""
        for k in range(steps):
            at = {
                "scale": bn["scale"][min(k, k_steps - 1)],
                "bias": bn["bias"][min(k, k_steps - 1)],
            }

            def support(dh, at=at):
                return half_mse(norm_apply({"dense": dh[0], "bn": at, "head": dh[1]},
                                           task.support.x), task.support.y)  # fmt: skip

            g = jax.grad(support)((dense, head))
            dense = jax.tree.map(lambda p, g: p - lr * g, dense, g[0])
            head = jax.tree.map(lambda p, g: p - lr * g, head, g[1])
        last = max(steps - 1, 0)
        at = {
            "scale": bn["scale"][min(last, k_steps - 1)],
            "bias": bn["bias"][min(last, k_steps - 1)],
        }
        return half_mse(norm_apply({"dense": dense, "bn": at, "head": head}, task.query.x),
                        task.query.y)  # fmt: skip

    loss, _ = learner.meta_loss(meta, task)
    want = reference(meta.params["dense"], meta.params["head"], copies, k_steps)
    np.testing.assert_allclose(loss, want, rtol=1e-10)
    got = jax.grad(lambda p: learner.meta_loss(p, task)[0])(meta)
    want_g = jax.grad(reference, argnums=(0, 1, 2))(
        meta.params["dense"], meta.params["head"], copies, k_steps
    )
    np.testing.assert_allclose(got.params["bn"]["scale"], want_g[2]["scale"], rtol=1e-8)
    np.testing.assert_allclose(got.params["dense"]["kernel"], want_g[0]["kernel"], rtol=1e-8)
    # At test time, more steps than K keep using the last copy.
    scores = learner.evaluate(meta, task, None, 5)
    np.testing.assert_allclose(
        scores["loss"], reference(meta.params["dense"], meta.params["head"], copies, 5), rtol=1e-9
    )
    check_grads(jax.jit(lambda p: learner.meta_loss(p, task)[0]), (meta,), order=1,
                modes=("rev",), atol=1e-5, rtol=1e-5)  # fmt: skip


def test_with_every_option_off_it_is_maml(x64):
    rng = np.random.default_rng(3)
    task = jax.tree.map(jnp.asarray, linear_task(rng, n=8, m=6, d=3))
    params = jax.tree.map(jnp.asarray, {"dense": {"kernel": rng.normal(size=(3, 4))},
              "bn": {"scale": rng.normal(size=4), "bias": rng.normal(size=4)},
              "head": {"kernel": rng.normal(size=(4, 1))}})  # fmt: skip
    plain = mamlpp(norm_apply, half_mse, inner_lr=0.2, num_steps=2, learn_inner_lr=False,
                   per_step=False, multi_step_loss_epochs=0)  # fmt: skip
    maml = jmeta.maml(norm_apply, half_mse, inner_lr=0.2, num_steps=2)
    meta = plain.init(params)
    got = jax.grad(lambda p: plain.meta_loss(p, task)[0])(meta).params
    want = jax.grad(lambda p: maml.meta_loss(p, task)[0])(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), got, want)


def test_count_meta_steps_advances_progress_and_nothing_else():
    assert is_batch_norm("block0/shortcut_bn/scale") and not is_batch_norm("head/bias")
    learner = mamlpp(lambda p, x: x @ p["w"], half_mse, inner_lr=0.1, num_steps=2)
    meta = learner.init({"w": jnp.ones((3, 1))})
    step = jmeta.meta_train_step(learner, count_meta_steps(optax.sgd(0.0)))
    rng = np.random.default_rng(0)
    tasks = jax.tree.map(lambda a: jnp.asarray(np.stack([a, a]), jnp.float32), linear_task(rng))
    state = step.init(meta)
    for _ in range(3):
        state, _ = step.update(state, tasks, jax.random.key(0))
    assert float(state.meta_params.progress) == 3.0
    np.testing.assert_array_equal(state.meta_params.params["w"], meta.params["w"])


def test_bad_arguments_are_named():
    apply = lambda p, x: x @ p  # noqa: E731
    with pytest.raises(ValueError, match="multi_step_loss_epochs"):
        mamlpp(apply, half_mse, multi_step_loss_epochs=-1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        mamlpp(apply, half_mse, steps_per_epoch=0)
    with pytest.raises(TypeError, match="learn_inner_lr"):
        mamlpp(apply, half_mse, learn_inner_lr="yes")


NORM_PARAMS = {"dense": {"kernel": jnp.ones((3, 4))},
               "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
               "head": {"kernel": jnp.ones((4, 1))}}  # fmt: skip


@pytest.mark.parametrize(
    "per_step, error, message",
    [
        ({"bn": True}, ValueError, "per_step must be True, False, a path predicate or a mask "
         "with the structure of the parameters: expected PyTreeDef("),
        (jax.tree.map(lambda _: 1, NORM_PARAMS), TypeError,
         "per_step: a mask's leaves must be Python bools (static); got int 1."),
        (jax.tree.map(lambda _: jnp.asarray(True), NORM_PARAMS), TypeError,
         "per_step: a mask's leaves must be Python bools (static); got ArrayImpl"),
        (lambda path: "nothing" in path, ValueError,
         "per_step: the predicate selects no parameter (pass per_step=False for none); parameter "
         "paths are ['bn/bias', 'bn/scale', 'dense/kernel', 'head/kernel']."),
        (lambda path: True, ValueError,
         "per_step selects every parameter: none would adapt in the inner loop."),
        (jax.tree.map(lambda _: True, NORM_PARAMS), ValueError,
         "per_step selects every parameter"),
    ],
)  # fmt: skip
def test_a_bad_per_step_mask_is_named_when_init_sees_the_parameters(per_step, error, message):
    learner = mamlpp(norm_apply, half_mse, num_steps=2, per_step=per_step)
    with pytest.raises(error) as info:
        learner.init(NORM_PARAMS)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_predicate_or_mask_selects_the_per_step_leaves():
    mask = jax.tree.map(lambda _: False, NORM_PARAMS)
    mask["head"]["kernel"] = True
    for per_step in (mask, lambda path: path == "head/kernel"):
        meta = mamlpp(norm_apply, half_mse, num_steps=2, per_step=per_step).init(NORM_PARAMS)
        assert meta.params["head"]["kernel"].shape == (2, 4, 1)
        assert meta.params["bn"]["scale"].shape == (4,) and meta.inner_lrs["head"]["kernel"] is None


@pytest.mark.parametrize("per_step", [True, False])
def test_meta_parameters_of_another_num_steps_are_refused_when_traced(per_step):
    task = jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float32), linear_task(np.random.default_rng(0))
    )
    made = mamlpp(norm_apply, half_mse, num_steps=5, per_step=per_step).init(NORM_PARAMS)
    for steps in (2, 8):  # fewer: the tail ignored; more: indexing would clamp
        learner = mamlpp(norm_apply, half_mse, num_steps=steps, per_step=per_step)
        message = (
            f"num_steps={steps}, but the meta-parameters hold per-step values (LSLR step sizes, "
            "per-step batch-norm weights) for 5 inner steps: build the learner with the "
            "num_steps of the one whose init made them."
        )
        for call in (
            lambda learner=learner: learner.meta_loss(made, task),
            lambda learner=learner: jax.jit(learner.meta_loss)(made, task),
            lambda learner=learner: learner.adapt(made, task.support),
        ):
            with pytest.raises(ValueError) as info:
                call()
            assert str(info.value) == message
    without_lslr = mamlpp(norm_apply, half_mse, num_steps=5, learn_inner_lr=False)
    meta = without_lslr.init(NORM_PARAMS)
    with pytest.raises(ValueError, match="for 5 inner steps"):
        mamlpp(norm_apply, half_mse, num_steps=3, learn_inner_lr=False).meta_loss(meta, task)
