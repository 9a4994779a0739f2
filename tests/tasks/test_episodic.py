import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.datasets import rotate_classes
from jmeta.tasks import check_episode, few_shot, sample_tasks


def labelled_images(classes=12, per_class=8, size=5, seed=0):
    """Random uint8 images whose first pixels spell out (class, example)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (classes, per_class, size, size, 1), dtype=np.uint8)
    images[:, :, 0, 0, 0] = np.arange(classes)[:, None]
    images[:, :, 0, 1, 0] = np.arange(per_class)[None, :]
    return images


def identify(x):
    """(class, example) of each image drawn from ``labelled_images``."""
    pixels = np.rint(np.asarray(x, np.float64) * 255).astype(np.int64)
    return pixels[..., 0, 0, 0], pixels[..., 0, 1, 0]


@pytest.fixture(scope="module")
def sampled():
    images = labelled_images()
    sample = jax.jit(
        lambda key, imgs: sample_tasks(few_shot, key, 400, imgs, ways=5, shots=2, queries=3)
    )
    return images, jax.device_get(sample(jax.random.key(0), images))


def test_shapes_dtypes_and_layout(sampled):
    _, tasks = sampled
    assert tasks.support.x.shape == (400, 10, 5, 5, 1) and tasks.query.x.shape == (400, 15, 5, 5, 1)
    assert tasks.support.x.dtype == np.float32 and tasks.support.y.dtype == np.int32
    np.testing.assert_array_equal(tasks.support.y[0], np.repeat(np.arange(5), 2))
    np.testing.assert_array_equal(tasks.query.y[0], np.repeat(np.arange(5), 3))
    assert 0.0 <= tasks.support.x.min() and tasks.support.x.max() <= 1.0


def test_classes_and_examples_are_distinct_and_labels_consistent(sampled):
    _, tasks = sampled
    s_cls, s_ex = identify(tasks.support.x)
    q_cls, q_ex = identify(tasks.query.x)
    for t in range(len(s_cls)):
        label_to_class = {}
        for cls, y in zip(
            np.concatenate([s_cls[t], q_cls[t]]),
            np.concatenate([tasks.support.y[t], tasks.query.y[t]]),
            strict=True,
        ):
            assert label_to_class.setdefault(int(y), int(cls)) == cls  # support and query agree
        assert len(set(label_to_class.values())) == 5  # distinct classes
        for label in range(5):
            examples = np.concatenate(
                [s_ex[t][tasks.support.y[t] == label], q_ex[t][tasks.query.y[t] == label]]
            )
            assert len(set(examples.tolist())) == 5  # shots + queries distinct examples


def test_images_match_the_source(sampled):
    images, tasks = sampled
    for x in (tasks.support.x, tasks.query.x):
        cls, ex = identify(x)
        np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), images[cls, ex])
        np.testing.assert_allclose(x, images[cls, ex] / 255, rtol=1e-6)


def test_every_class_takes_every_label_and_example(sampled):
    _, tasks = sampled
    cls, ex = identify(tasks.support.x)
    counts = np.zeros((12, 5))
    np.add.at(counts, (cls.ravel(), tasks.support.y.ravel()), 1)
    # 400 tasks x 10 support images: each (class, label) pair expects 400*10/60 ~ 67.
    assert counts.min() > 25 and counts.max() < 120
    assert set(ex.ravel().tolist()) == set(range(8))


def test_pure_function_of_the_key():
    images = labelled_images()
    sample = jax.jit(functools.partial(few_shot, ways=4, shots=1, queries=2, rotations=True))
    a, b, c = (sample(jax.random.key(k), images) for k in (3, 3, 4))
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a.query.x, c.query.x)


def test_rotations_match_host_rotate_classes():
    images = labelled_images(classes=3, per_class=6, size=7)
    rotated = rotate_classes(images)
    options = dict(batch_size=50, ways=5, shots=2, queries=2)
    on_device = jax.jit(functools.partial(sample_tasks, few_shot, rotations=True, **options))(
        jax.random.key(0), data=images
    )
    on_host = jax.jit(functools.partial(sample_tasks, few_shot, **options))(
        jax.random.key(0), data=rotated
    )
    chex.assert_trees_all_equal(on_device, on_host)
    # And the images really are rotated copies of source images: every rotation occurs.
    sources = images.reshape(-1, 7, 7, 1)
    turns = set()
    for img in np.rint(np.asarray(on_device.support.x) * 255).astype(np.uint8).reshape(-1, 7, 7, 1):
        matches = [r for r in range(4) for src in sources if np.array_equal(np.rot90(src, r), img)]
        assert len(matches) == 1
        turns.add(matches[0])
    assert turns == {0, 1, 2, 3}


def test_bfloat16_and_augment_options():
    images = labelled_images(size=8)
    flip_all = lambda key, x: x[:, :, ::-1]  # noqa: E731

    @jax.jit
    def sample(key):
        options = dict(images=images, ways=3, shots=1, queries=1)
        return (
            few_shot(key, **options),
            few_shot(key, dtype=jnp.bfloat16, **options),
            few_shot(key, augment=flip_all, **options),
        )

    plain, half, flipped = sample(jax.random.key(0))
    assert half.support.x.dtype == jnp.bfloat16
    np.testing.assert_array_equal(half.support.x, plain.support.x.astype(jnp.bfloat16))
    np.testing.assert_array_equal(flipped.query.x, plain.query.x[:, :, ::-1])


@pytest.mark.parametrize(
    "shape, dtype, options, error, match",
    [
        ((22, 20, 4, 4, 1), np.uint8, dict(ways=30), ValueError, r"ways=30 .* has 22 classes"),
        (
            (6, 20, 4, 4, 1),
            np.uint8,
            dict(ways=30, rotations=True),
            ValueError,
            r"6 classes \(24 with rotations\)",
        ),
        (
            (6, 20, 4, 4, 1),
            np.uint8,
            dict(shots=5, queries=16),
            ValueError,
            r"5 \+ 16 = 21 .* only 20 examples",
        ),
        ((6, 20, 4, 4), np.uint8, {}, ValueError, r"\[classes, examples_per_class, H, W, C\]"),
        ((6, 20, 4, 4, 1), np.float32, {}, TypeError, "must be uint8"),
        ((6, 20, 4, 5, 1), np.uint8, dict(rotations=True), ValueError, "square images; .* 4x5"),
        ((6, 20, 4, 4, 1), np.uint8, dict(shots=0), ValueError, "shots must be >= 1"),
        ((6, 20, 4, 4, 1), np.uint8, dict(dtype=jnp.int32), TypeError, "floating dtype"),
    ],
)
def test_clear_errors(shape, dtype, options, error, match):
    images = jax.ShapeDtypeStruct(shape, dtype)
    options = dict(dict(ways=5, shots=1, queries=1), **options)
    with pytest.raises(error, match=match):
        check_episode(images, **options)
    with pytest.raises(error, match=match):
        jax.eval_shape(lambda k, x: few_shot(k, x, **options), jax.random.key(0), images)


def test_fixed_evaluation_tasks_are_shared_across_algorithms():
    """jmeta.evaluate draws task i from fold_in(key(seed), i) through a partial sampler.

    Before adaptation every algorithm predicts with the same parameters, so equal
    ``loss_before`` on 60 tasks means the algorithms were scored on the same tasks.
    """
    images = labelled_images(classes=10, per_class=6, size=4)
    sampler = functools.partial(few_shot, ways=3, shots=1, queries=2)
    images = jnp.asarray(images)

    def apply(params, x):
        return x.reshape(x.shape[0], -1) @ params["head"]["kernel"]

    params = {"head": {"kernel": jax.random.normal(jax.random.key(0), (16, 3))}}
    scores = {}
    for name, build in (("maml", jmeta.maml), ("meta_sgd", jmeta.meta_sgd)):
        learner = build(apply, jmeta.losses.cross_entropy, inner_lr=0.5)
        scores[name] = jmeta.evaluate(
            learner, learner.init(params), sampler, num_tasks=60, seed=3, data=images
        )
    before = {name: s["loss_before"].mean for name, s in scores.items()}
    assert before["maml"] == before["meta_sgd"]
    learner = jmeta.maml(apply, jmeta.losses.cross_entropy, inner_lr=0.5)
    other = jmeta.evaluate(learner, params, sampler, num_tasks=60, seed=4, data=images)
    assert other["loss_before"].mean != before["maml"]
