r"""iMAML: MAML with a proximal inner problem and an implicit meta-gradient.

Rajeswaran, Finn, Kakade and Levine, *Meta-Learning with Implicit Gradients*,
NeurIPS 2019. https://arxiv.org/abs/1909.04630
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax
from jax.scipy.sparse.linalg import cg

from jmeta.algorithms.gradient_based import (
    MetricFns,
    SupportLoss,
    gradient_based_learner,
    resolve_inner_optimizer,
)
from jmeta.inner import InnerLoopResult, inner_loop
from jmeta.types import Batch, LossFn, MetaLearner, Params
from jmeta.validation import check_positive_int, check_real


def imaml(
    apply_fn: Callable,
    loss_fn: LossFn,
    *,
    lam: float = 1.0,
    inner_lr: float | None = None,
    num_steps: int = 10,
    inner_optimizer: optax.GradientTransformation | None = None,
    cg_steps: int = 5,
    cg_tol: float = 1e-6,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""Implicit MAML.

    The meta-parameters are an initialisation :math:`\theta`. A task's adapted
    parameters approximately solve the proximal problem

    .. math:: \phi^\star(\theta) = \arg\min_\phi\; \mathcal{L}^{s}(\phi)
              + \tfrac{\lambda}{2} \lVert \phi - \theta \rVert^2,

    found by ``num_steps`` steps of an optax optimizer started at
    :math:`\theta`. At a solution :math:`\nabla \mathcal{L}^{s}(\phi^\star) +
    \lambda(\phi^\star - \theta) = 0`, so by the implicit function theorem

    .. math:: \frac{d \mathcal{L}^{q}(\phi^\star)}{d\theta}
              = \Big(I + \tfrac{1}{\lambda} \nabla^2 \mathcal{L}^{s}(\phi^\star)\Big)^{-1}
                \nabla \mathcal{L}^{q}(\phi^\star).

    The meta-gradient solves this system with ``cg_steps`` of conjugate
    gradient on Hessian-vector products at the adapted parameters; the inner
    loop itself is never differentiated, so memory does not grow with
    ``num_steps``. The gradient is exact when the inner problem is solved
    exactly and CG converges; otherwise it is the paper's approximation.

    Two constraints: CG assumes :math:`I + H/\lambda` is positive definite,
    so :math:`\lambda` must exceed the most negative eigenvalue of the support
    Hessian (any :math:`\lambda > 0` for convex support losses); and inner SGD
    steps must satisfy ``inner_lr < 2 / (L + lam)`` with :math:`L` the largest
    eigenvalue, or the inner loop diverges. Forward-mode differentiation of
    ``meta_loss`` is not supported (the implicit gradient is a custom VJP).

    Args:
      apply_fn, loss_fn: as in :func:`~jmeta.maml`.
      lam: the proximal strength :math:`\lambda > 0` (larger keeps
        :math:`\phi` closer to :math:`\theta`).
      inner_lr: inner SGD step size; give this or ``inner_optimizer``.
      num_steps: inner steps on the proximal objective (``adapt`` and
        ``evaluate`` take another value at test time).
      inner_optimizer: any optax transform for the inner problem.
      cg_steps: conjugate-gradient iterations per meta-gradient (5 in the
        paper).
      cg_tol: CG stops early once the residual falls below ``cg_tol`` times
        the right-hand side's norm.
      transductive, metrics: as in :func:`~jmeta.maml`.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are the model
      params. ``meta_loss`` returns the query loss; its gradient is the
      implicit meta-gradient. ``inner_loss_first``/``inner_loss_last`` are
      proximal objectives (support loss plus the proximal term).

    Example:
      >>> import jax, jmeta
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.imaml(model.apply, jmeta.losses.mse, lam=2.0, inner_lr=0.05)
      >>> theta = learner.init(model.init(jax.random.key(0)))
      >>> task = jmeta.tasks.sinusoid(jax.random.key(1))
      >>> meta_grad = jax.jit(jax.grad(lambda t: learner.meta_loss(t, task, None)[0]))(theta)
      >>> jax.tree.structure(meta_grad) == jax.tree.structure(theta)
      True
    """
    solver = proximal_solver(lam, cg_steps=cg_steps, cg_tol=cg_tol)
    optimizer = resolve_inner_optimizer(inner_lr, inner_optimizer)
    return gradient_based_learner(
        apply_fn,
        loss_fn,
        init=lambda params: params,
        unpack=lambda theta: (theta, optimizer),
        num_steps=num_steps,
        first_order=False,
        remat=False,
        adapt_params=None,
        transductive=transductive,
        metrics=metrics,
        inner_solver=solver,
    )


def proximal_solver(lam: float, *, cg_steps: int = 5, cg_tol: float = 1e-6) -> Callable:
    r"""An inner solver (see :func:`gradient_based_learner`) with iMAML's implicit gradient.

    Forward: ``num_steps`` optimizer steps on :math:`\mathcal{L}^{s}(\phi) +
    \frac{\lambda}{2}\lVert\phi - \theta\rVert^2` from :math:`\phi_0 = \theta`.
    Backward: the cotangent :math:`g` of :math:`\phi` maps to
    :math:`(I + H/\lambda)^{-1} g`, by conjugate gradient on Hessian-vector
    products :math:`Hu` of the support loss at :math:`\phi`. The support batch
    gets no cotangent.
    """
    lam = check_real("lam", lam)
    cg_steps = check_positive_int("cg_steps", cg_steps)
    cg_tol = check_real("cg_tol", cg_tol, allow_zero=True)

    def solve(
        support_loss: SupportLoss,
        theta: Params,
        optimizer: optax.GradientTransformation,
        support: Batch,
        num_steps: int,
    ) -> InnerLoopResult:
        def run(theta, support):
            def proximal(phi):
                sq = optax.tree_utils.tree_norm(optax.tree_utils.tree_sub(phi, theta), squared=True)
                return support_loss(phi, support) + 0.5 * lam * sq

            return inner_loop(proximal, theta, optimizer, num_steps)

        @jax.custom_vjp
        def adapted(theta, support):
            return run(theta, support)

        def forward(theta, support):
            result = run(theta, support)
            return result, (result.params, support)

        def backward(residuals, cotangent):
            phi, support = residuals
            grad = jax.grad(lambda p: support_loss(p, support))

            def matvec(u):  # (I + H / lam) u
                hvp = jax.jvp(grad, (phi,), (u,))[1]
                return jax.tree.map(lambda a, b: a + b / lam, u, hvp)

            # The cotangent of the reported inner losses is ignored: they are metrics.
            solution, _ = cg(matvec, cotangent.params, tol=cg_tol, maxiter=cg_steps)
            return solution, None

        adapted.defvjp(forward, backward)
        return adapted(theta, support)

    return solve
