"""Models for meta-learning, as pure :class:`~jmeta.types.Model` function pairs.

Every model here is a ``Model(init, apply)``: ``init(key)`` returns a plain
nested dict of arrays with readable names (``conv0/kernel``, ..., ``head/kernel``)
and ``apply(params, x)`` is a pure function of its arguments. Meta-learning
algorithms call ``apply`` under ``jax.vmap`` over tasks, each task with its own
adapted weights, and differentiate through it to second order; nothing in a
model is mutable. Only the last, linear layer of each network has ``head`` in
its path, so ANIL-style methods can adapt it alone.

Batch-normalisation policy
--------------------------
No running statistics, ever (following MAML): a model that averaged
statistics over training batches would share them across tasks, and a
prediction for one task would depend on the others. Normalised layers always
use the mean and (biased) variance of a batch of the current call, computed
in float32, followed by a learnable per-channel ``scale`` and ``bias``. The
statistics are differentiated through like any other activation. The
``batch_norm`` option of :func:`conv4` and :func:`resnet12` says which batch:

* ``"transductive"`` (default, MAML's behaviour): the batch given to
  ``apply``. Predictions for queries evaluated together depend on one another
  through the statistics.
* ``"support"`` (non-transductive): ``apply(params, x, reference=support_x)``
  runs ``support_x`` and ``x`` through the network together and normalises
  every layer with statistics of the ``support_x`` rows alone, so each query's
  prediction depends only on itself and the support set. Without
  ``reference``, ``x`` is its own reference (the same as ``"transductive"``),
  which is what the inner loop on the support set needs.
* ``"none"``: no normalisation; the convolutions have biases instead.

``reference`` is ignored by the other two modes.

The policy is stated once, by the model: ``apply`` carries it
(:func:`batch_norm_policy` reads it; :func:`mlp` states ``"none"``), and every
learner follows it. Their ``transductive`` argument defaults to ``None``
("follow the model"): a ``"support"`` model gets ``reference=support_x`` for
its query predictions (in the gradient-based learners and in
:func:`~jmeta.protonet`, :func:`~jmeta.matching_net` and :func:`~jmeta.r2d2`
alike), and an explicit ``transductive`` that contradicts the model raises a
``ValueError`` naming both. For a model jmeta did not build, state the policy
with :func:`with_batch_norm_policy`; a function without one is treated as
transductive unless the learner is given ``transductive=False``.

Compute dtype
-------------
Built without ``dtype``, a model computes in the dtype of the parameters it is
given, so :func:`jmeta.precision.mixed_precision` (which casts float32
parameters to bfloat16 on the way in) runs its convolutions and matrix
products in bfloat16. ``dtype=jnp.bfloat16`` fixes the compute dtype instead.

Convolution implementations
---------------------------
``conv_impl`` chooses how :func:`conv4` and :func:`resnet12` compute their
convolutions; every choice computes the same function up to float rounding.
Under ``vmap`` with per-task weights (every gradient-based algorithm), XLA
lowers ``lax.conv_general_dilated`` to a grouped convolution, which is slow on
CPU and on GPUs; on CPU, convolutions with one kernel for all tasks (the metric
learners' embedding, MAML's first inner step) are fastest as ``lax.conv``.

* ``"auto"`` (the default, :data:`jmeta.models.DEFAULT_CONV_IMPL`): the choice that
  measured fastest in most cases on the backend the model is traced for:
  ``"adaptive"`` on CPU (the exception measured: a shared-weight Conv4 on 600
  images, where ``"im2col"`` was faster on an idle 2-core CPU; see
  ``benchmarks/RESULTS.md``), ``"im2col"`` elsewhere.
* ``"adaptive"``: a convolution primitive whose ``vmap`` rule looks at how the
  kernel is shared (``jmeta.models._conv``): ``lax.conv`` where the tasks
  share a kernel; where every task has its own, on CPU one ``lax.conv`` per
  task in a sequential loop (its kernel gradients as matrix products), and
  first layers of one to three channels as fused multiply-adds.
* ``"im2col"``: shifted copies of the input contracted with the kernel by one
  ``einsum``, which ``vmap`` turns into a batched matrix product.
* ``"xla"``: ``lax.conv_general_dilated`` throughout.

The measurements behind ``"auto"``, jmeta against PyTorch on the same CPU and
GPU workloads, are in ``benchmarks/RESULTS.md`` (summarised in ``docs/training.md``).
"""

from jmeta.models._layers import (
    BATCH_NORM_MODES,
    CONV_IMPLS,
    DEFAULT_CONV_IMPL,
    DEFAULT_CONV_IMPL_REASON,
    BatchNormMode,
    ConvImpl,
)
from jmeta.models.adapters import from_equinox, from_linen, from_nnx
from jmeta.models.conv4 import conv4
from jmeta.models.mlp import mlp
from jmeta.models.policy import batch_norm_policy, with_batch_norm_policy
from jmeta.models.resnet12 import resnet12
from jmeta.types import Model

__all__ = [
    "BATCH_NORM_MODES",
    "CONV_IMPLS",
    "BatchNormMode",
    "ConvImpl",
    "DEFAULT_CONV_IMPL",
    "DEFAULT_CONV_IMPL_REASON",
    "Model",
    "batch_norm_policy",
    "conv4",
    "from_equinox",
    "from_linen",
    "from_nnx",
    "mlp",
    "resnet12",
    "with_batch_norm_policy",
]
