import jax
import pytest
from tiny_runs import fake_omniglot, tiny_omniglot, tiny_sinusoid

import jmeta
from jmeta.train import ConfigValueError, TrainConfig, train
from jmeta.train.build import build_learners, initial_state, meta_optimizer
from jmeta.train.memory import available_bytes, check_memory, estimate_step_memory
from jmeta.train.problem import build_problem

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam


def parts(config):
    problem = build_problem(config)
    learner, _ = build_learners(config, problem)
    step = jmeta.meta_train_step(learner, meta_optimizer(config))
    return problem, learner, step


@pytest.mark.parametrize("algorithm", ["maml", "anil", "reptile"])
def test_the_estimate_stays_below_what_xla_allocates(algorithm):
    """The estimate leaves activations out: below XLA's own memory analysis of the step."""
    config = TrainConfig(algorithm=algorithm, width=16, meta_batch_size=64, inner_steps=2)
    problem, learner, step = parts(config)
    est = estimate_step_memory(step, learner, problem.model, problem.train.sample, ())
    state, _ = initial_state(step, learner, problem.model, config.seed, abstract=True)
    tasks = jax.eval_shape(
        lambda k: jmeta.tasks.sample_tasks(problem.train.sample, k, 64, data=()),
        jax.random.key(0),
    )
    stats = jax.jit(step.update).lower(state, tasks, jax.random.key(1)).compile().memory_analysis()
    allocated = stats.temp_size_in_bytes + stats.argument_size_in_bytes
    assert 0 < est.meta_step(64) <= allocated, (est, allocated)
    assert est.task == 4 * 2 * (10 + 10)  # x and y of 10 support and 10 query points
    params = 4 * (16 + 16 + 16 * 16 + 16 + 16 + 1)
    head = 4 * (16 + 1)
    assert est.adapted == (head if algorithm == "anil" else params)  # ANIL shares its body


def test_a_meta_batch_of_a_hundred_million_is_refused_before_anything_is_written(
    tmp_path, monkeypatch
):
    # A machine with 16 GB free (the tiny run's estimate is 55 GB; the CLI test uses the real
    # amount with the default model, 720 GB).
    monkeypatch.setattr("jmeta.train.memory.available_bytes", lambda device=None: 16 * 10**9)
    with pytest.raises(
        ConfigValueError,
        match=r"^meta_batch_size 100000000 needs at least an estimated 54.8 GB per meta-step "
        r"\(548 bytes per task for its inputs and adapted parameters; activations not counted\), "
        "more than the 16.0 GB available on cpu:0; lower meta_batch_size.$",
    ):
        train(tiny_sinusoid(tmp_path / "run", meta_batch_size=100_000_000), progress=False)
    assert not (tmp_path / "run").exists()


def test_too_many_test_tasks_for_memory_names_eval_tasks(tmp_path):
    config = tiny_sinusoid(tmp_path / "run", eval_tasks=2**31 - 1)
    problem, learner, step = parts(config)
    with pytest.raises(
        ConfigValueError, match=r"^eval_tasks 2147483647 needs at least an estimated [\d.]+ GB"
    ):
        check_memory(config, problem, step, learner, available=10**9)
    est = check_memory(config.replace(eval_tasks=600), problem, step, learner, available=10**9)
    assert est is not None and est.meta_step(config.meta_batch_size) < 10**9


def test_available_memory_is_known_on_cpu():
    free = available_bytes()
    assert isinstance(free, int) and free > 0


def test_the_estimate_is_per_device_with_the_state_and_every_split_on_each(tmp_path):
    config = tiny_omniglot(tmp_path / "run", fake_omniglot(tmp_path / "data"), meta_batch_size=6)
    problem, learner, step = parts(config)
    one = check_memory(config, problem, step, learner, available=10**12)
    four = check_memory(config, problem, step, learner, available=10**12, devices=4)
    images = sum(
        leaf.nbytes
        for split in (problem.train, problem.val, problem.test)
        for leaf in jax.tree.leaves(split.data)
    )
    assert one == four and one.data == images > 0  # uint8 images of the three splits
    # Each device: the state and the data, and its 2 of the 6 tasks (6 / 4, rounded up).
    assert four.meta_step(6, 4) == one.state + images + 2 * one.per_task()
    assert one.meta_step(6) - four.meta_step(6, 4) == 4 * one.per_task()
    scored = four.evaluation(batch_size=6, num_tasks=10, devices=4)
    assert scored == one.meta_params + images + 2 * one.per_task() + 3 * one.results
    # Seeds trained together (--seeds) each hold a state and their tasks; the data are shared.
    assert four.meta_step(6, 4, seeds=3) == images + 3 * (one.state + 2 * one.per_task())
    # What fits on 4 devices but not on one is refused on one only.
    available = four.meta_step(6, 4) + one.per_task()
    check_memory(config, problem, step, learner, available=available, devices=4)
    with pytest.raises(ConfigValueError, match=r"^meta_batch_size 6 needs at least an estimated"):
        check_memory(config, problem, step, learner, available=available)


def test_the_trainer_checks_a_device_s_share_of_the_meta_batch(tmp_path, monkeypatch):
    monkeypatch.setattr("jmeta.train.memory.available_bytes", lambda device=None: 1000)
    config = tiny_sinusoid(tmp_path / "run", devices=8, meta_batch_size=16)
    # 2.7 kB: the state (97 parameters, Adam's two moments, a gradient: 4 x 388 bytes, and
    # counters) and 2 of the 16 tasks (548 bytes each); on one device 16 tasks, 10.3 kB.
    with pytest.raises(
        ConfigValueError,
        match=r"^meta_batch_size 16 needs at least an estimated 2.7 kB "
        r"per meta-step per device \(548 bytes per task for its inputs and adapted parameters, "
        r"2 tasks on each of 8 devices; activations not counted\), more than the 1.0 kB "
        "available on cpu:0; lower meta_batch_size.$",
    ):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_seeds_trained_together_are_counted_each(tmp_path, monkeypatch):
    one = tiny_sinusoid(tmp_path / "one", devices=1, meta_batch_size=16)
    problem, learner, step = parts(one)
    est = check_memory(one, problem, step, learner, available=10**12)
    assert est is not None and est.data == 0  # sinusoid tasks are generated, not read
    need = est.meta_step(16, 1, seeds=3)
    assert need == 3 * est.meta_step(16)
    # Room for one seed's meta-step, not for three: the run of three seeds is refused.
    monkeypatch.setattr("jmeta.train.memory.available_bytes", lambda device=None: need - 1)
    train_one = one.replace(output_dir=str(tmp_path / "fits"), num_steps=10, steps_per_call=10)
    train(train_one, progress=False)
    config = one.replace(output_dir=str(tmp_path / "run"), seeds=(0, 1, 2))
    with pytest.raises(
        ConfigValueError,
        match=r"^meta_batch_size 16 needs at least an estimated [\d.]+ kB per meta-step "
        r"\(548 bytes per task for its inputs and adapted parameters, 16 tasks on each of 1 "
        r"devices, for each of 3 seeds; activations not counted\), more than the [\d.]+ kB",
    ):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()
