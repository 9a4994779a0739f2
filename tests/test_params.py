import jax.numpy as jnp
import pytest

from jmeta.params import combine, partition, path_mask, path_str, resolve_mask

PARAMS = {
    "body": {"conv0": {"kernel": jnp.ones(2)}},
    "head": {"kernel": jnp.ones(1), "bias": jnp.ones(1)},
}


def test_path_mask_selects_by_path():
    mask = path_mask(PARAMS, lambda p: p.startswith("head/"))
    assert mask == {"body": {"conv0": {"kernel": False}}, "head": {"kernel": True, "bias": True}}


def test_path_mask_that_selects_nothing_is_an_error_listing_paths():
    with pytest.raises(ValueError, match="selects no parameter.*body/conv0/kernel"):
        path_mask(PARAMS, lambda p: "classifier" in p)


def test_partition_combine_round_trip():
    mask = path_mask(PARAMS, lambda p: "head" in p)
    selected, rest = partition(PARAMS, mask)
    assert selected["body"]["conv0"]["kernel"] is None and rest["head"]["bias"] is None
    assert combine(selected, rest) == PARAMS


def test_resolve_mask_rejects_wrong_structure():
    assert resolve_mask(PARAMS, None)["head"]["bias"] is True
    with pytest.raises(ValueError, match="structure of the parameters"):
        resolve_mask(PARAMS, {"head": True})


def test_path_str_of_sequences_and_attributes():
    import jax

    [(path, _)] = jax.tree_util.tree_leaves_with_path([{"w": 1}])
    assert path_str(path) == "0/w"
