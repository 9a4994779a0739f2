r"""N-way K-shot classification tasks, sampled on device from a class array.

A few-shot data set is one uint8 array ``images[classes, examples, H, W, C]``
(the layout of :class:`jmeta.datasets.FewShotSplit`). A task is two integer
gathers from it: ``N`` distinct classes, then ``K + Q`` distinct examples of
each. Everything is a pure function of a PRNG key and static shapes, so task
sampling runs inside the compiled meta-step, for a whole batch of tasks at once
(:func:`jmeta.tasks.sample_tasks`), with no host round trip.

Labels: the ``N`` classes are an ordered sample without replacement, and the
``i``-th class drawn gets label ``i``; every assignment of labels to classes is
equally likely, so a label carries no information about the class across
tasks. Support and query share the labels. Examples are laid out class by
class: ``support.y == [0]*K + [1]*K + ... + [N-1]*K``.

Rotations as classes (Santoro et al. 2016; Vinyals et al. 2016): with
``rotations=True`` the data set has ``4 * classes`` virtual classes; virtual
class ``4 * c + r`` is class ``c`` rotated by ``90 * r`` degrees
counter-clockwise. That is the convention of
:func:`jmeta.datasets.rotate_classes`, so sampling with ``rotations=True``
from ``images`` gives exactly the tasks that ``rotations=False`` gives from
``rotate_classes(images)``, without materialising four times the data.

A data set closed over by a jitted function is embedded in the compiled
program as a constant (slow to compile, and held twice in memory); for a data
set of more than a few megabytes pass ``images`` as an argument of the
compiled function instead (see :func:`jmeta.train.train`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.types import Array, Batch, PRNGKey, Task
from jmeta.validation import check_positive_int

#: ``(key, images [n, H, W, C] uint8) -> images`` applied to every example of a task.
Augment = Callable[[PRNGKey, Array], Array]


def few_shot(
    key: PRNGKey,
    images: Array,
    *,
    ways: int,
    shots: int,
    queries: int,
    rotations: bool = False,
    augment: Augment | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> Task:
    """Sample one ``ways``-way ``shots``-shot task with ``queries`` queries per class.

    Args:
      key: a PRNG key; the task is a pure function of it.
      images: uint8 ``[classes, examples_per_class, H, W, C]``, ideally already
        on device (a NumPy array is copied on every call outside ``jit``).
      ways: classes per task ``N``, distinct.
      shots: support examples per class ``K``.
      queries: query examples per class ``Q``; support and query examples of a
        class are distinct.
      rotations: sample from ``4 * classes`` virtual classes, rotating images of
        virtual class ``4 * c + r`` by ``90 * r`` degrees counter-clockwise
        (square images only).
      augment: optional ``(key, images) -> images`` applied to the uint8 images
        of the task, support and query, e.g.
        :func:`jmeta.tasks.augment.crop_and_flip`.
      dtype: floating dtype of the returned images, scaled to ``[0, 1]``
        (converted through float32, so ``bfloat16`` rounds once).

    Returns:
      ``Task(support=Batch(x [N*K, H, W, C], y [N*K] int32),
      query=Batch(x [N*Q, H, W, C], y [N*Q] int32))``, class by class.

    Raises:
      ValueError, TypeError: bad shapes or options (checked on static shapes,
        once per trace), e.g. more ways than classes or more shots and queries
        than examples per class.

    Example:
      >>> import functools, jax, numpy as np
      >>> from jmeta.tasks import few_shot, sample_tasks
      >>> images = np.zeros((30, 20, 28, 28, 1), np.uint8)
      >>> task = few_shot(jax.random.key(0), images, ways=5, shots=1, queries=15)
      >>> task.support.x.shape, task.query.y.shape
      ((5, 28, 28, 1), (75,))
      >>> tasks = sample_tasks(few_shot, jax.random.key(1), 32, images,
      ...                      ways=5, shots=1, queries=15, rotations=True)
      >>> tasks.support.x.shape
      (32, 5, 28, 28, 1)
    """
    num_classes, per_class = check_episode(
        images, ways=ways, shots=shots, queries=queries, rotations=rotations, dtype=dtype
    )
    class_key, example_key, augment_key = jax.random.split(key, 3)
    classes = jax.random.permutation(class_key, num_classes)[:ways]
    example_keys = jax.random.split(example_key, ways)
    examples = jax.vmap(lambda k: jax.random.permutation(k, per_class)[: shots + queries])(
        example_keys
    )
    images = jnp.asarray(images)
    if rotations:
        picked = images[(classes // 4)[:, None], examples]  # [N, K+Q, H, W, C]
        picked = jax.vmap(_rotate)(picked, classes % 4)
    else:
        picked = images[classes[:, None], examples]
    if augment is not None:
        flat = picked.reshape(-1, *picked.shape[2:])
        picked = augment(augment_key, flat).reshape(picked.shape)
    picked = to_float(picked, dtype)
    support = picked[:, :shots].reshape(ways * shots, *picked.shape[2:])
    query = picked[:, shots:].reshape(ways * queries, *picked.shape[2:])
    labels = jnp.arange(ways, dtype=jnp.int32)
    return Task(
        Batch(support, jnp.repeat(labels, shots)), Batch(query, jnp.repeat(labels, queries))
    )


def to_float(images: Array, dtype: jnp.dtype = jnp.float32) -> Array:
    """uint8 images to ``dtype`` in ``[0, 1]`` (through float32)."""
    return (images.astype(jnp.float32) * (1.0 / 255.0)).astype(dtype)


def check_episode(
    images: Array,
    *,
    ways: int,
    shots: int,
    queries: int,
    rotations: bool = False,
    dtype: jnp.dtype = jnp.float32,
    source: str = "images",
) -> tuple[int, int]:
    """Check that ``images`` can give the tasks asked for; reads static shapes only.

    Args:
      images: the class array (anything with ``shape`` and ``dtype``).
      ways, shots, queries, rotations, dtype: as in :func:`few_shot`.
      source: what to call the data in messages (``"the val split 'minimal-val'"``).

    Returns:
      ``(classes to sample from, examples per class)``; the classes count
      rotations.

    Raises:
      TypeError: non-integer counts, non-uint8 images, non-floating ``dtype``.
      ValueError: a bad rank, too few classes or examples, non-square images
        with ``rotations``.
    """
    ways = check_positive_int("ways", ways)
    shots = check_positive_int("shots", shots)
    queries = check_positive_int("queries", queries)
    if not isinstance(rotations, (bool, np.bool_)):
        raise TypeError(
            f"rotations must be a Python bool (static); got {type(rotations).__name__}."
        )
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 5:
        raise ValueError(
            f"{source} must be an array [classes, examples_per_class, H, W, C]; got shape {shape}."
        )
    if np.dtype(images.dtype) != np.uint8:
        raise TypeError(
            f"{source} must be uint8 (the sampler scales to [0, 1] itself); got dtype "
            f"{images.dtype}. Keep data sets as uint8, e.g. jmeta.datasets.load(...).images."
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype; got {np.dtype(dtype).name}.")
    classes, per_class, height, width = (int(d) for d in shape[:4])
    if rotations and height != width:
        raise ValueError(
            f"rotations=True needs square images; {source} has images of {height}x{width}."
        )
    available = 4 * classes if rotations else classes
    if ways > available:
        what = f"{classes} classes" + (f" ({available} with rotations)" if rotations else "")
        raise ValueError(f"ways={ways} needs {ways} distinct classes, but {source} has {what}.")
    if shots + queries > per_class:
        raise ValueError(
            f"shots + queries = {shots} + {queries} = {shots + queries} distinct examples per "
            f"class, but {source} has only {per_class} examples per class."
        )
    return available, per_class


def _rotate(images: Array, quarter_turns: Array) -> Array:
    """Rotate ``[n, S, S, C]`` images by ``90 * quarter_turns`` degrees, like ``np.rot90``."""
    branches = [lambda x, k=k: jnp.rot90(x, k, axes=(1, 2)) for k in range(4)]
    return jax.lax.switch(quarter_turns, branches, images)
