import numpy as np
import pytest
import torch

from prunebench.errors import PrunebenchError, UnknownNameError
from prunebench.models import ModelDims
from prunebench.supernet import SPACES, Masks, get_space

DIMS = ModelDims(num_layers=2, num_heads=4, hidden_size=64, intermediate_size=256)
BERT_BASE = ModelDims(num_layers=12, num_heads=12, hidden_size=768, intermediate_size=3072)


@pytest.mark.parametrize("name", list(SPACES))
def test_largest_is_the_full_network(name):
    space = get_space(name, DIMS)
    assert space.masks(space.largest()).is_full


@pytest.mark.parametrize("name", list(SPACES))
def test_samples_are_valid_and_cover_the_ranges(name):
    space = get_space(name, DIMS)
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(60)]
    for config in samples:
        assert space.validate(config) == config
    for key, (low, high) in list(space.ranges.items())[:6]:
        values = {config[key] for config in samples}
        assert min(values) >= low and max(values) <= high
        assert len(values) > 1  # sampling actually varies each hyperparameter


@pytest.mark.parametrize("name", list(SPACES))
def test_smallest_and_middle_are_smaller(name):
    space = get_space(name, DIMS)
    full, small, middle = (space.masks(c) for c in (space.largest(), space.smallest(), space.middle()))
    kept = lambda m: int(m.heads[m.layers].sum() + m.units[m.layers].sum())  # noqa: E731
    assert kept(small) < kept(middle) < kept(full)


def test_small_space_keeps_the_first_l_h_u():
    masks = get_space("small", DIMS).masks({"num_layers": 1, "num_heads": 3, "num_units": 10})
    assert masks.kept_layers() == [0]
    assert masks.kept_heads(0) == [0, 1, 2]
    assert masks.kept_units(0) == list(range(10))


def test_medium_space_sets_each_layer():
    config = {"num_heads_0": 0, "num_units_0": 5, "num_heads_1": 4, "num_units_1": 0}
    masks = get_space("medium", DIMS).masks(config)
    assert masks.kept_layers() == [0, 1]
    assert masks.kept_heads(0) == [] and masks.kept_units(0) == list(range(5))
    assert masks.kept_heads(1) == [0, 1, 2, 3] and masks.kept_units(1) == []


def test_large_space_keeps_any_subset():
    space = get_space("large", DIMS)
    config = {key: 0 for key in space.ranges}
    config.update({"head_1_3": 1, "head_1_1": 1, "unit_0_200": 1})
    masks = space.masks(config)
    assert masks.kept_heads(1) == [1, 3] and masks.kept_heads(0) == []
    assert masks.kept_units(0) == [200]


def test_layer_space_drops_layers():
    masks = get_space("layer", DIMS).masks({"layer_0": 0, "layer_1": 1})
    assert masks.kept_layers() == [1]
    assert torch.equal(masks.heads, Masks.full(DIMS).heads)


def test_space_sizes_are_exact():
    assert get_space("small", BERT_BASE).size() == 12 * 12 * 3072
    assert get_space("layer", BERT_BASE).size() == 2**12
    assert get_space("medium", DIMS).size() == (5 * 257) ** 2
    assert get_space("large", DIMS).size() == 2 ** (2 * (4 + 256))


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"num_layers": 3, "num_heads": 1, "num_units": 1}, "num_layers=3 is outside space 'small'"),
        ({"num_layers": 0, "num_heads": 1, "num_units": 1}, "[1, 2]"),
        ({"num_layers": 1, "num_heads": 1.5, "num_units": 1}, "num_heads=1.5"),
        ({"num_layers": 1, "num_heads": True, "num_units": 1}, "num_heads=True"),
        ({"num_layers": 1, "num_heads": "2", "num_units": 1}, "num_heads='2'"),
        ({"num_layers": 1, "num_heads": 1}, "lacks key 'num_units'"),
        ({"num_layers": 1, "num_heads": 1, "num_units": 1, "depth": 2}, "'depth' is not in space 'small'"),
        ([1, 2, 3], "JSON object"),
    ],
)
def test_configs_outside_the_space_are_errors_not_clamped(config, fragment):
    with pytest.raises(PrunebenchError) as error:
        get_space("small", DIMS).masks(config)
    assert fragment in str(error.value)


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="layer, small, medium, large"):
        get_space("huge", DIMS)


def test_syne_tune_space_matches_the_ranges():
    space = get_space("small", DIMS)
    domains = space.syne_tune_space()
    assert set(domains) == set(space.ranges)
    assert (domains["num_units"].lower, domains["num_units"].upper) == (1, 256)


def test_small_configs_at_a_fraction_of_the_encoder():
    space = get_space("small", BERT_BASE)
    assert space.at_fraction(0.5, "depth") == {"num_layers": 6, "num_heads": 12, "num_units": 3072}
    assert space.at_fraction(0.5, "width") == {"num_layers": 12, "num_heads": 6, "num_units": 1536}
    assert space.at_fraction(0.25, "both") == {"num_layers": 6, "num_heads": 6, "num_units": 1536}
    with pytest.raises(UnknownNameError, match="depth, width, both"):
        space.at_fraction(0.5, "diagonal")
