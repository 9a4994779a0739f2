r"""The differentiable inner loop.

:math:`K` steps of an optax transformation on a task's support loss,

.. math::
    g_k = \nabla_\phi \mathcal{L}_{\text{support}}(\phi_k), \qquad
    (u_k, s_{k+1}) = \text{opt.update}(g_k, s_k, \phi_k), \qquad
    \phi_{k+1} = \phi_k + u_k,

inside a ``jax.lax.scan`` (compile time does not grow with :math:`K`). The
result is differentiable with respect to :math:`\phi_0` (second order). With
``first_order=True`` each :math:`g_k` is wrapped in ``stop_gradient`` and
nothing else is, which gives first-order MAML for SGD and the analogous
approximation for any other optimizer. With ``remat=True`` each step is
``jax.checkpoint``-ed: the backward pass recomputes a step's activations instead
of storing them, so memory grows far slower with :math:`K`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.params import Mask, combine, partition
from jmeta.types import Array, Params
from jmeta.validation import check_positive_int


class InnerLoopResult(NamedTuple):
    """Adapted parameters and the support loss seen before each of the K updates."""

    params: Params
    losses: Array  # [num_steps]


def inner_loop(
    loss_fn: Callable[[Params], Array],
    params: Params,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    *,
    mask: Mask | None = None,
    first_order: bool = False,
    remat: bool = False,
    unroll: int | bool = 1,
) -> InnerLoopResult:
    """Run ``num_steps`` differentiable optimizer steps on ``loss_fn``.

    Args:
      loss_fn: ``(params) -> scalar`` support loss of one task.
      params: starting point :math:`\\phi_0` (usually the meta-learned init).
      optimizer: any optax transformation; its state starts fresh per task.
        For second order through adaptive optimizers use a differentiable
        variant (e.g. ``optax.adam(..., eps_root=1e-8)``).
      num_steps: :math:`K \\ge 0`; zero returns ``params`` unchanged.
      mask: a bool pytree (see :mod:`jmeta.params`); only ``True`` leaves adapt
        and only their gradients are computed.
      first_order: stop gradients through the inner gradients.
      remat: checkpoint each step (recompute in the backward pass).
      unroll: steps per iteration of the underlying ``lax.scan`` (``True``: all).
        Unrolling lets XLA fuse and schedule across steps, at a compile time
        that grows with the unroll factor.

    Returns:
      ``InnerLoopResult(params, losses)``, with ``losses[k]`` the support loss
      at :math:`\\phi_k`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from jmeta.inner import inner_loop
      >>> out = inner_loop(lambda w: jnp.sum((w - 3.0) ** 2), jnp.zeros(2), optax.sgd(0.25), 2)
      >>> out.params, out.losses
      (Array([2.25, 2.25], dtype=float32), Array([18. ,  4.5], dtype=float32))
    """
    num_steps = check_positive_int("num_steps", num_steps, allow_zero=True)
    if mask is None:
        adapted, frozen = params, None
        full = lambda a: a  # noqa: E731
    else:
        adapted, frozen = partition(params, mask)
        full = lambda a: combine(a, frozen)  # noqa: E731

    def step(carry, _):
        phi, opt_state = carry
        loss, grads = jax.value_and_grad(lambda a: loss_fn(full(a)))(phi)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        updates, opt_state = optimizer.update(grads, opt_state, phi)
        return (optax.apply_updates(phi, updates), opt_state), loss

    if remat:
        step = jax.checkpoint(step)
    carry = (adapted, optimizer.init(adapted))
    if num_steps == 0:
        _, losses = jax.lax.scan(step, carry, None, length=0)
        return InnerLoopResult(full(adapted), losses)
    # The first step runs outside the scan: under ``vmap`` over tasks its
    # parameters are still shared by every task, so the support forward and
    # backward passes are single matrix products over all tasks' points.
    # Inside a scan the carry would be broadcast to one copy per task first.
    carry, first_loss = step(carry, None)
    losses = first_loss[None]
    if num_steps > 1:
        carry, rest = jax.lax.scan(step, carry, None, length=num_steps - 1, unroll=unroll)
        losses = jnp.concatenate([losses, rest])
    return InnerLoopResult(full(carry[0]), losses)
