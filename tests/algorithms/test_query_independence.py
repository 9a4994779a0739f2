"""The batch-norm policy is honoured by every learner, stated once by the model.

For every algorithm and every mode: changing one query changes no other
query's prediction, exactly, when the model normalises with the support set
(``"support"``) or not at all (``"none"``), and does change them when it
normalises with the query batch (``"transductive"``). Every learner is built
with its default ``transductive=None``: the policy comes from the model alone.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.losses import cross_entropy
from jmeta.models import batch_norm_policy, conv4, with_batch_norm_policy

MODES = ("transductive", "support", "none")
SHAPE = (16, 16, 1)
WAYS, QUERIES = 3, 5
FAST_IMPL = "xla"  # one convolution op compiles faster than im2col


def images(seed, n):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, *SHAPE), np.float32))


SUPPORT = jmeta.Batch(images(0, WAYS), jnp.arange(WAYS))
QUERY_X = images(1, QUERIES)
ALTERED_X = QUERY_X.at[0].set(images(2, 1)[0])  # only query 0 differs


def cavia_apply(model):
    """A context-conditioned conv4 for CAVIA, stating the conv4's policy."""

    def apply(params, x, context, **kwargs):
        return model.apply(params, x * (1.0 + jnp.sum(context)), **kwargs)

    return with_batch_norm_policy(apply, batch_norm_policy(model.apply))


def gradient(builder, **kwargs):
    def build(mode, impl):
        model = conv4(WAYS, channels=4, input_shape=SHAPE, batch_norm=mode, conv_impl=impl)
        return model, builder(model.apply, cross_entropy, **kwargs)

    return build


def metric(builder):
    def build(mode, impl):
        model = conv4(None, channels=4, input_shape=SHAPE, batch_norm=mode, conv_impl=impl)
        return model, builder(model.apply, num_classes=WAYS)

    return build


def cavia(mode, impl):
    model = conv4(WAYS, channels=4, input_shape=SHAPE, batch_norm=mode, conv_impl=impl)
    return model, jmeta.cavia(cavia_apply(model), cross_entropy, context_size=2, inner_lr=0.1)


ALGORITHMS = {
    "maml": gradient(jmeta.maml, inner_lr=0.1),
    "fomaml": gradient(jmeta.fomaml, inner_lr=0.1),
    "meta_sgd": gradient(jmeta.meta_sgd, inner_lr=0.1),
    "anil": gradient(jmeta.anil, inner_lr=0.1),
    "boil": gradient(jmeta.boil, inner_lr=0.1),
    "reptile": gradient(jmeta.reptile, inner_lr=0.1, num_steps=1),
    "imaml": gradient(jmeta.imaml, inner_lr=0.1, num_steps=1),
    "cavia": cavia,
    "protonet": metric(jmeta.protonet),
    "matching_net": metric(jmeta.matching_net),
    "r2d2": metric(jmeta.r2d2),
}


def predictions(algorithm, mode, impl=FAST_IMPL):
    model, learner = ALGORITHMS[algorithm](mode, impl)
    meta_params = learner.init(model.init(jax.random.key(0)))

    @jax.jit
    def predict(query_x):
        return learner.predict(learner.adapt(meta_params, SUPPORT), query_x)

    return np.asarray(predict(QUERY_X)), np.asarray(predict(ALTERED_X))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_query_moves_others_only_when_transductive(algorithm, mode):
    before, after = predictions(algorithm, mode)
    assert np.isfinite(before).all() and np.isfinite(after).all()
    assert not np.array_equal(before[0], after[0])  # the altered query's own prediction moves
    if mode == "transductive":
        assert np.abs(before[1:] - after[1:]).max() > 1e-6
    else:
        np.testing.assert_array_equal(before[1:], after[1:])


@pytest.mark.parametrize("algorithm", ["maml", "protonet"])
def test_exact_with_the_default_im2col_convolutions(algorithm):
    before, after = predictions(algorithm, "support", impl="im2col")
    np.testing.assert_array_equal(before[1:], after[1:])
    assert not np.array_equal(before[0], after[0])


@pytest.mark.parametrize("mode", MODES)
def test_models_state_their_policy_and_wrappers_keep_it(mode):
    apply = conv4(WAYS, channels=4, input_shape=SHAPE, batch_norm=mode).apply
    assert batch_norm_policy(apply) == mode
    assert batch_norm_policy(jmeta.precision.mixed_precision(apply)) == mode
    assert batch_norm_policy(jax.jit(apply)) == mode
    assert batch_norm_policy(functools.partial(apply)) == mode
    assert batch_norm_policy(jmeta.models.mlp((2, 3)).apply) == "none"
    assert batch_norm_policy(lambda p, x: x) is None


@pytest.mark.parametrize(("mode", "transductive"), [("support", True), ("transductive", False)])
@pytest.mark.parametrize("family", ["gradient", "metric"])
def test_a_learner_argument_that_contradicts_the_model_is_an_error(family, mode, transductive):
    model = conv4(WAYS if family == "gradient" else None, input_shape=SHAPE, batch_norm=mode)
    match = rf"transductive={transductive} contradicts the model's batch_norm='{mode}'"
    with pytest.raises(ValueError, match=match):
        if family == "gradient":
            jmeta.maml(model.apply, cross_entropy, inner_lr=0.1, transductive=transductive)
        else:
            jmeta.protonet(model.apply, shots=1, transductive=transductive)


def test_agreeing_arguments_and_functions_without_a_policy_behave_as_before():
    support_model = conv4(WAYS, input_shape=SHAPE, batch_norm="support")
    jmeta.maml(support_model.apply, cross_entropy, inner_lr=0.1, transductive=False)
    none_model = conv4(WAYS, input_shape=SHAPE, batch_norm="none")
    for transductive in (True, False):  # nothing is normalised: both are honoured
        jmeta.maml(none_model.apply, cross_entropy, inner_lr=0.1, transductive=transductive)
    # A plain function states nothing: transductive unless told otherwise, as before.
    learner = jmeta.maml(lambda p, x, reference=None: x @ p, jmeta.losses.mse, inner_lr=0.1)
    assert not isinstance(
        learner.adapt(jnp.ones((2, 1)), jmeta.Batch(jnp.ones((3, 2)), jnp.ones((3, 1)))),
        jmeta.algorithms.WithReference,
    )
    with pytest.raises(TypeError, match="transductive must be None"):
        jmeta.maml(support_model.apply, cross_entropy, inner_lr=0.1, transductive="yes")
