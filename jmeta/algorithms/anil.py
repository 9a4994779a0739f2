"""ANIL and BOIL: MAML with only the head, or only the body, adapting.

Raghu, Raghu, Bengio and Vinyals, *Rapid Learning or Feature Reuse? Towards
Understanding the Effectiveness of MAML*, ICLR 2020. https://arxiv.org/abs/1909.09157

Oh, Yoo, Kim and Yun, *BOIL: Towards Representation Change for Few-shot
Learning*, ICLR 2021. https://arxiv.org/abs/2008.08882
"""

from __future__ import annotations

from collections.abc import Callable

from jmeta.algorithms.maml import maml
from jmeta.types import LossFn, MetaLearner


def _in_head(head: str) -> Callable[[str], bool]:
    if not isinstance(head, str) or not head:
        raise TypeError(f"head must be the name of the head module (a str); got {head!r}.")
    return lambda path: head in path.split("/")


def anil(apply_fn: Callable, loss_fn: LossFn, *, head: str = "head", **kwargs) -> MetaLearner:
    r"""Almost No Inner Loop: the inner loop adapts only the head.

    Identical to :func:`~jmeta.maml` except that the inner loop updates only the
    parameters whose path has a component named ``head``; the body is reused
    as meta-learned. The meta-gradient still reaches the body through the
    query loss and, in second order, through the head's inner gradients.

    Args:
      apply_fn, loss_fn: as in :func:`~jmeta.maml`.
      head: the name of the head module in the parameter paths.
      **kwargs: any other :func:`~jmeta.maml` argument except ``adapt_params``.
    """
    return maml(apply_fn, loss_fn, adapt_params=_in_head(head), **kwargs)


def boil(apply_fn: Callable, loss_fn: LossFn, *, head: str = "head", **kwargs) -> MetaLearner:
    """Body Only update in Inner Loop: the inner loop adapts all but the head.

    Takes the same arguments as :func:`anil`.
    """
    in_head = _in_head(head)
    return maml(apply_fn, loss_fn, adapt_params=lambda path: not in_head(path), **kwargs)
