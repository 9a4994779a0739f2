"""The batch-norm policy, stated once by the model and read by every learner.

A model's batch-norm policy decides whether a query's prediction may depend on
the other queries evaluated with it (see :mod:`jmeta.models`):

* ``"transductive"``: ``apply(params, x)`` normalises with the statistics of
  ``x``; queries predicted together depend on one another.
* ``"support"``: ``apply(params, x, reference=support_x)`` normalises with the
  statistics of ``support_x``; each query depends only on itself and the
  support set. Learners must pass ``reference=``.
* ``"none"``: nothing is normalised across examples.

The policy is an attribute of the ``apply`` function, so it travels with it
into every learner: :func:`~jmeta.models.conv4` and
:func:`~jmeta.models.resnet12` set their ``batch_norm``, :func:`~jmeta.models.mlp`
sets ``"none"``, and :func:`with_batch_norm_policy` states it for any other
function. Wrappers made with ``functools.wraps`` (``jax.jit``,
:func:`jmeta.precision.mixed_precision`) keep it. Learners read it with
:func:`resolve_transductive`: their ``transductive`` argument defaults to the
model's policy, and an explicit value that contradicts it is an error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from jmeta.models._layers import BATCH_NORM_MODES

ATTRIBUTE = "batch_norm_policy"


def batch_norm_policy(apply_fn: Callable) -> str | None:
    """The policy ``apply_fn`` states (``"transductive"``, ``"support"``, ``"none"``), or ``None``.

    Looks through ``functools.partial`` objects to the function they wrap.
    """
    while True:
        policy = getattr(apply_fn, ATTRIBUTE, None)
        if policy is not None or not isinstance(apply_fn, functools.partial):
            return policy
        apply_fn = apply_fn.func


def with_batch_norm_policy(apply_fn: Callable, policy: str) -> Callable:
    """``apply_fn`` stating ``policy``, for models that jmeta did not build.

    Args:
      apply_fn: ``(params, x, **kwargs) -> outputs``; with ``"support"`` it must
        accept ``reference=`` (the support inputs whose statistics normalise
        ``x``).
      policy: ``"transductive"``, ``"support"`` or ``"none"``.

    Returns:
      A function that calls ``apply_fn`` and carries the policy.

    Example:
      >>> import jax.numpy as jnp
      >>> from jmeta.models import batch_norm_policy, with_batch_norm_policy
      >>> apply = with_batch_norm_policy(lambda p, x: x @ p, "none")
      >>> batch_norm_policy(apply)
      'none'
    """
    if policy not in BATCH_NORM_MODES:
        raise ValueError(f"policy must be one of {BATCH_NORM_MODES}; got {policy!r}.")

    @functools.wraps(apply_fn)
    def apply(*args, **kwargs):
        return apply_fn(*args, **kwargs)

    setattr(apply, ATTRIBUTE, policy)
    return apply


def resolve_transductive(apply_fn: Callable, transductive: bool | None) -> bool:
    """Whether a learner predicts queries with ``apply_fn`` alone (no ``reference=``).

    Args:
      apply_fn: the model's apply function.
      transductive: the learner's argument: ``None`` follows the model's
        policy (``True`` for a function that states none, as before policies
        existed); ``True`` or ``False`` must agree with it.

    Returns:
      ``False`` for a ``"support"`` model (queries get ``reference=support``),
      ``True`` for ``"transductive"`` and ``"none"`` models, and
      ``transductive`` itself for a function without a stated policy.

    Raises:
      TypeError: ``transductive`` is not ``None`` or a bool.
      ValueError: ``transductive`` contradicts the model's policy.
    """
    if transductive is not None and not isinstance(transductive, bool):
        raise TypeError(
            f"transductive must be None (follow the model), True or False; got {transductive!r}."
        )
    policy = batch_norm_policy(apply_fn)
    if policy is None:
        return True if transductive is None else transductive
    if policy == "support" and transductive:
        raise ValueError(
            "transductive=True contradicts the model's batch_norm='support' (which "
            "normalises queries with the support set's statistics). Leave transductive unset "
            "to follow the model, or build the model with batch_norm='transductive'."
        )
    if policy == "transductive" and transductive is False:
        raise ValueError(
            "transductive=False contradicts the model's batch_norm='transductive' "
            "(which normalises queries with their own batch's statistics and ignores "
            "reference=). Leave transductive unset to follow the model, or build the model "
            "with batch_norm='support'."
        )
    return policy != "support"
