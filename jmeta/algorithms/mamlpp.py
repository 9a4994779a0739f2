r"""MAML++: MAML with the stabilising changes of Antoniou et al. (2019).

Antoniou, Edwards and Storkey, *How to train your MAML*, ICLR 2019.
https://arxiv.org/abs/1810.09502

Each change is an option of :func:`mamlpp`, and with every option off the
learner is MAML (same inner loop, same meta-gradient):

* **LSLR** (``learn_inner_lr``): one learned inner step size per parameter
  tensor and per inner step, :math:`\alpha_{\ell,k}`, initialised to
  ``inner_lr``;
* **per-step batch-norm weights and biases** (``per_step``): the selected
  parameters (by default the batch-norm scales and biases) hold one copy per
  inner step, :math:`\gamma_{\ell,k}`; step :math:`k` uses copy
  :math:`\min(k, K-1)` and does not adapt them (the reference code's default);
* **multi-step loss** (``multi_step_loss_epochs``): the meta-objective is
  :math:`\sum_k w_k(e)\, \mathcal{L}^q(\phi_{k+1})` with the annealed importance
  weights of :func:`multi_step_weights`, for the first epochs, then the final
  query loss alone;
* **derivative-order annealing** (``first_order_epochs``): first-order
  meta-gradients for the first epochs, second order afterwards.

An epoch is ``steps_per_epoch`` meta-steps (500 in the paper). The learner
knows how far meta-training has got from a counter in its meta-parameters
(:class:`MamlppParams`), which :func:`count_meta_steps` advances by one per
meta-step; the trainer wraps its meta-optimizer with it. Cosine annealing of
the meta-learning rate, the paper's fifth change, is a meta-optimizer
schedule (``jmeta train --meta-lr-schedule cosine``, the default of ``--algo
mamlpp``). Batch norm keeps no running statistics in jmeta (batch statistics
always, :mod:`jmeta.models`), so the paper's per-step running statistics have
nothing to apply to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jmeta.algorithms.gradient_based import (
    MetricFns,
    WithReference,
    before_and_after,
    check_builder_args,
    label_checks,
    query_metrics,
)
from jmeta.models.policy import resolve_transductive
from jmeta.params import MaskSpec, combine, partition, path_str
from jmeta.types import Array, Batch, LossFn, MetaLearner, Metrics, Params, Task
from jmeta.validation import (
    check_bool,
    check_learning_rate,
    check_positive_int,
    check_task,
)

#: The paper's Omniglot settings (the reference code's configuration files).
PAPER_STEPS_PER_EPOCH = 500
PAPER_MULTI_STEP_LOSS_EPOCHS = 10


def is_batch_norm(path: str) -> bool:
    """Whether a parameter path names a batch-norm scale or bias of jmeta's models
    (``bn0/scale``, ``block1/shortcut_bn/bias``)."""
    parts = path.split("/")
    return len(parts) >= 2 and parts[-1] in ("scale", "bias") and "bn" in parts[-2]


class MamlppParams(NamedTuple):
    """MAML++'s meta-parameters.

    Attributes:
      params: the initialisation :math:`\\theta`; each per-step leaf has a
        leading axis of ``num_steps`` copies.
      inner_lrs: LSLR step sizes, a ``[num_steps]`` vector per adapted leaf
        (``None`` per-step leaves), or ``None`` without LSLR.
      progress: float32 scalar, meta-steps applied so far (advanced by
        :func:`count_meta_steps`; no gradient flows into it).
    """

    params: Params
    inner_lrs: Params | None
    progress: Array


def multi_step_weights(
    num_steps: int, epoch: Array, anneal_epochs: int, dtype: jnp.dtype = jnp.float32
) -> Array:
    r"""The multi-step loss's importance weights at ``epoch`` (Antoniou et al. 2019, sec. 4).

    With :math:`K` steps, :math:`E` annealing epochs, decay :math:`d = 1/(KE)`
    and floor :math:`m = 0.03/K`:

    .. math::
        w_k = \max(1/K - e\,d,\ m)\quad (k < K-1), \qquad
        w_{K-1} = \min(1/K + e\,(K-1)\,d,\ 1 - (K-1)\,m).

    Args:
      num_steps: :math:`K`.
      epoch: :math:`e` (an integer-valued array).
      anneal_epochs: :math:`E` > 0.
      dtype: of the weights.

    Returns:
      ``[K]`` weights.

    Example:
      >>> from jmeta.algorithms.mamlpp import multi_step_weights
      >>> print(multi_step_weights(5, 0, 10))
      [0.2 0.2 0.2 0.2 0.2]
    """
    k = num_steps
    epoch = jnp.asarray(epoch, dtype)
    decay = 1.0 / k / anneal_epochs
    floor = 0.03 / k
    early = jnp.maximum(1.0 / k - epoch * decay, floor)
    last = jnp.minimum(1.0 / k + epoch * (k - 1) * decay, 1.0 - (k - 1) * floor)
    return jnp.concatenate([jnp.full((k - 1,), early, dtype), last[None]])


def count_meta_steps(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` on MAML++'s trainable meta-parameters, and ``progress += 1`` per update.

    Args:
      optimizer: the meta-optimizer (any optax transform).

    Returns:
      A transform for :class:`MamlppParams` (other meta-parameters pass to
      ``optimizer`` unchanged).

    Example:
      >>> import optax
      >>> from jmeta.algorithms.mamlpp import count_meta_steps
      >>> meta_optimizer = count_meta_steps(optax.adam(1e-3))
    """

    def trainable(tree):
        # None: no leaf there, so the optimizer leaves the counter alone.
        return tree._replace(progress=None) if isinstance(tree, MamlppParams) else tree  # type: ignore[arg-type]

    def init(params):
        return optimizer.init(trainable(params))

    def update(updates, state, params=None):
        inner, state = optimizer.update(
            trainable(updates), state, None if params is None else trainable(params)
        )
        if isinstance(updates, MamlppParams):
            inner = inner._replace(progress=jnp.ones_like(updates.progress))
        return inner, state

    return optax.GradientTransformation(init, update)


def _per_step_mask(params: Params, per_step: MaskSpec | bool) -> Params:
    """The mask of the per-step parameters that ``per_step`` names; bad masks named."""
    if per_step is False or per_step is None:
        return jax.tree.map(lambda _: False, params)
    if per_step is True:
        return jax.tree_util.tree_map_with_path(lambda p, _: is_batch_norm(path_str(p)), params)
    paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    if callable(per_step):
        mask = jax.tree_util.tree_map_with_path(lambda p, _: bool(per_step(path_str(p))), params)
        if not any(jax.tree.leaves(mask)):
            raise ValueError(
                f"per_step: the predicate selects no parameter (pass per_step=False for none); "
                f"parameter paths are {paths[:12]}{' ...' if len(paths) > 12 else ''}."
            )
    else:
        expected, found = jax.tree.structure(params), jax.tree.structure(per_step)
        if found != expected:  # type: ignore[operator]  # jaxlib's PyTreeDef
            raise ValueError(
                f"per_step must be True, False, a path predicate or a mask with the structure "
                f"of the parameters: expected {expected}, got {found}."
            )
        mask = per_step
        bad = [v for v in jax.tree.leaves(mask) if not isinstance(v, bool | np.bool_)]
        if bad:
            raise TypeError(
                f"per_step: a mask's leaves must be Python bools (static); got "
                f"{type(bad[0]).__name__} {bad[0]!r}."
            )
    leaves = jax.tree.leaves(mask)
    if leaves and all(leaves):
        raise ValueError(
            "per_step selects every parameter: none would adapt in the inner loop. Select the "
            "batch-norm weights (per_step=True) or another subset."
        )
    return mask


def _check_steps(meta: MamlppParams, stepped: Params, train_steps: int) -> None:
    """Refuse meta-parameters made for another number of inner steps (shapes: trace time)."""
    lengths = {int(p.shape[0]) for p in jax.tree.leaves(stepped)}
    if meta.inner_lrs is not None:
        lengths |= {
            int(lr.shape[0]) if lr.ndim == 1 else -1 for lr in jax.tree.leaves(meta.inner_lrs)
        }
    wrong = sorted(n for n in lengths if n != train_steps)
    if wrong:
        made = f"{wrong[0]} inner steps" if wrong[0] >= 0 else "another shape"
        raise ValueError(
            f"num_steps={train_steps}, but the meta-parameters hold per-step values (LSLR step "
            f"sizes, per-step batch-norm weights) for {made}: build the learner with the "
            f"num_steps of the one whose init made them."
        )


def mamlpp(
    apply_fn: Callable,
    loss_fn: LossFn,
    *,
    inner_lr: float = 0.1,
    num_steps: int = 5,
    learn_inner_lr: bool = True,
    per_step: MaskSpec | bool = True,
    multi_step_loss_epochs: int = PAPER_MULTI_STEP_LOSS_EPOCHS,
    first_order_epochs: int = 0,
    steps_per_epoch: int = PAPER_STEPS_PER_EPOCH,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""MAML++ (Antoniou et al. 2019): MAML with LSLR, per-step batch-norm weights,
    the annealed multi-step loss and derivative-order annealing.

    The inner loop, for task support loss :math:`\mathcal{L}^s` and
    :math:`\phi_0 = \theta`:

    .. math::
        \phi_{k+1} = \phi_k - \alpha_{\ell,k}\, \nabla_{\phi}
            \mathcal{L}^s(\phi_k;\ \gamma_{\min(k, K-1)}),

    with :math:`\alpha_{\ell,k}` learned per tensor :math:`\ell` and step
    :math:`k` (LSLR; a constant ``inner_lr`` without it) and :math:`\gamma_k`
    the per-step copies of the batch-norm weights. The meta-loss at epoch
    :math:`e = \lfloor \text{progress} / \text{steps\_per\_epoch} \rfloor` is

    .. math::
        \sum_{k=0}^{K-1} w_k(e)\, \mathcal{L}^q(\phi_{k+1};\ \gamma_k)
        \ \text{ if } e < E, \qquad \mathcal{L}^q(\phi_K;\ \gamma_{K-1})
        \ \text{ otherwise},

    (:func:`multi_step_weights`; :math:`E` = ``multi_step_loss_epochs``),
    differentiated through the inner loop, with the inner gradients held
    constant (first order) while :math:`e <` ``first_order_epochs``.

    Args:
      apply_fn: ``(params, x) -> predictions`` (``reference=`` for a
        ``batch_norm="support"`` model).
      loss_fn: ``(predictions, targets) -> scalar``.
      inner_lr: the inner step size (LSLR's initial value); 0.1 in the paper's
        Omniglot runs.
      num_steps: inner steps :math:`K` in meta-training (5 in the paper).
      learn_inner_lr: LSLR.
      per_step: which parameters hold one copy per inner step: ``True`` for
        the batch-norm scales and biases (:func:`is_batch_norm`), ``False``
        for none, or a path predicate or bool mask (:mod:`jmeta.params`).
        A model without batch norm has none to copy; ``True`` is then ``False``.
        Checked when ``init`` sees the parameters: a mask of another structure
        or with non-bool leaves, a predicate that selects nothing, or a
        selection of every parameter (none would adapt) is refused, naming
        ``per_step``.
      multi_step_loss_epochs: :math:`E` (10 in the paper; 0: final loss only).
      first_order_epochs: epochs of first-order meta-gradients (0: second
        order throughout, the paper's Omniglot setting).
      steps_per_epoch: meta-steps per epoch (500 in the paper).
      transductive: follows the model's batch-norm policy (see
        :func:`~jmeta.algorithms.gradient_based.gradient_based_learner`).
      metrics: extra query metrics, e.g. ``{"accuracy": jmeta.losses.accuracy}``.

    Returns:
      A :class:`~jmeta.MetaLearner` over :class:`MamlppParams`. Meta-train it
      with :func:`count_meta_steps` around the meta-optimizer (otherwise the
      schedules stay at epoch 0). Its functions refuse, when traced,
      meta-parameters whose per-step values were made for another
      ``num_steps`` (indexing would otherwise clamp silently). Test-time
      steps beyond ``num_steps`` reuse the last step's step sizes and
      batch-norm weights.

    Raises:
      ValueError, TypeError: a bad argument, named (``per_step`` when
        ``init`` sees the parameters; ``num_steps`` against the
        meta-parameters when a function is traced).

    Example:
      >>> import jax, optax, jmeta
      >>> from jmeta.algorithms.mamlpp import count_meta_steps, mamlpp
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = mamlpp(model.apply, jmeta.losses.mse, inner_lr=0.01, num_steps=2)
      >>> meta_params = learner.init(model.init(jax.random.key(0)))
      >>> step = jmeta.meta_train_step(learner, count_meta_steps(optax.sgd(1e-3)))
      >>> state = step.init(meta_params)
    """
    metric_fns = check_builder_args(apply_fn, loss_fn, metrics)
    inner_lr = check_learning_rate("inner_lr", inner_lr)
    train_steps = check_positive_int("num_steps", num_steps)
    learn_inner_lr = check_bool("learn_inner_lr", learn_inner_lr)
    msl_epochs = check_positive_int(
        "multi_step_loss_epochs", multi_step_loss_epochs, allow_zero=True
    )
    fo_epochs = check_positive_int("first_order_epochs", first_order_epochs, allow_zero=True)
    steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
    transductive = resolve_transductive(apply_fn, transductive)

    def per_step_mask(params: Params):
        return _per_step_mask(params, per_step)

    def init(params: Params) -> MamlppParams:
        mask = per_step_mask(params)
        theta = jax.tree.map(
            lambda m, p: jnp.repeat(p[None], train_steps, axis=0) if m else p, mask, params
        )
        lrs = None
        if learn_inner_lr:
            lrs = jax.tree.map(
                lambda m, p: None if m else jnp.full((train_steps,), inner_lr, p.dtype),
                mask,
                params,
            )
        return MamlppParams(theta, lrs, jnp.zeros((), jnp.float32))

    def split(meta: MamlppParams):
        """``(adapted leaves, per-step leaves)`` of the initialisation (the mask reads paths)."""
        stepped, adapted = partition(meta.params, per_step_mask(meta.params))
        return adapted, stepped

    def at(stepped, k):
        index = jnp.minimum(k, train_steps - 1)
        return jax.tree.map(lambda p: p[index], stepped)

    def apply_at(adapted, stepped, k, x, support_x):
        params = combine(adapted, at(stepped, k))
        if transductive:
            return apply_fn(params, x)
        return apply_fn(params, x, reference=support_x)

    def run(meta: MamlppParams, support: Batch, query: Batch | None, steps: int, train: bool):
        """Adapt for ``steps``; returns (adapted, stepped, support losses, query losses)."""
        adapted, stepped = split(meta)
        _check_steps(meta, stepped, train_steps)
        epoch = jnp.floor(jax.lax.stop_gradient(meta.progress) / steps_per_epoch)
        first_order = epoch < fo_epochs if train else jnp.asarray(False)
        multi = train and msl_epochs > 0 and query is not None

        def step(phi, k):
            def support_loss(a):
                return loss_fn(apply_at(a, stepped, k, support.x, support.x), support.y)

            loss, grads = jax.value_and_grad(support_loss)(phi)
            grads = jax.tree.map(
                lambda g: jnp.where(first_order, jax.lax.stop_gradient(g), g), grads
            )
            if meta.inner_lrs is None:
                lrs = jax.tree.map(lambda g: jnp.asarray(inner_lr, g.dtype), grads)
            else:
                index = jnp.minimum(k, train_steps - 1)
                lrs = jax.tree.map(lambda lr: lr[index], meta.inner_lrs)
            phi = jax.tree.map(lambda p, lr, g: p - lr * g, phi, lrs, grads)
            q = jnp.zeros((), jnp.float32)
            if multi:
                assert query is not None  # multi implies it
                q = loss_fn(apply_at(phi, stepped, k, query.x, support.x), query.y)
            return phi, (loss, q)

        phi, (losses, query_losses) = jax.lax.scan(step, adapted, jnp.arange(steps))
        weights = None
        if multi:
            dtype = query_losses.dtype
            weights = jnp.where(
                epoch < msl_epochs,
                multi_step_weights(steps, epoch, msl_epochs, dtype),
                jnp.zeros((steps,), dtype).at[-1].set(1),
            )
        return phi, stepped, losses, query_losses, weights

    def wrap(phi, stepped, k, support):
        params = combine(phi, at(stepped, k))
        return params if transductive else WithReference(params, support.x)

    def adapt(meta, support: Batch, key=None, num_steps: int | None = None):
        del key
        steps = train_steps if num_steps is None else num_steps
        steps = check_positive_int("num_steps", steps, allow_zero=True)
        phi, stepped, *_ = run(meta, support, None, steps, train=False)
        return wrap(phi, stepped, max(steps - 1, 0), support)

    def predict(adapted, x: Array) -> Array:
        if transductive:
            return apply_fn(adapted, x)
        return apply_fn(adapted.params, x, reference=adapted.reference)

    def score(predictions, targets, suffix=""):
        return query_metrics(loss_fn, metric_fns, predictions, targets, suffix)

    def meta_loss(meta, task: Task, key=None) -> tuple[Array, Metrics]:
        del key
        check_task(task)
        phi, stepped, losses, query_losses, weights = run(
            meta, task.support, task.query, train_steps, train=True
        )
        predictions = predict(wrap(phi, stepped, train_steps - 1, task.support), task.query.x)
        metrics_ = {**score(predictions, task.query.y), **label_checks(predictions, task)}
        if weights is None:
            loss = metrics_["loss"]
        else:
            loss = jnp.sum(weights * query_losses)
        metrics_["inner_loss_first"] = losses[0]
        metrics_["inner_loss_last"] = losses[-1]
        return loss, metrics_

    return MetaLearner(init, adapt, predict, meta_loss, before_and_after(adapt, predict, score))


__all__ = ["MamlppParams", "count_meta_steps", "is_batch_norm", "mamlpp", "multi_step_weights"]
