import math

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


# --- --round-units: unit counts rounded up to a multiple of N ------------------------------------------------


@pytest.mark.parametrize("name", ["small", "medium"])
def test_rounding_off_draws_exactly_what_it_drew_before(name):
    space, plain = get_space(name, BERT_BASE), get_space(name, BERT_BASE, round_units=1)
    rng, raw = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(20):
        drawn = {key: int(raw.integers(low, high + 1)) for key, (low, high) in space.ranges.items()}
        assert space.sample(rng) == drawn == plain.rounded(drawn)
    assert space.size() == math.prod(high - low + 1 for low, high in space.ranges.values())


@pytest.mark.parametrize("name", ["small", "medium"])
@pytest.mark.parametrize("step", [4, 8, 100])
def test_rounded_unit_counts_are_multiples_never_zero_never_past_the_full_width(name, step):
    dims = ModelDims(num_layers=3, num_heads=4, hidden_size=64, intermediate_size=250)  # 250: not a multiple
    space, rng = get_space(name, dims, round_units=step), np.random.default_rng(0)
    raw_rng = np.random.default_rng(0)
    for _ in range(200):
        raw = {key: int(raw_rng.integers(low, high + 1)) for key, (low, high) in space.ranges.items()}
        config = space.sample(rng)
        for key, value in config.items():
            if not key.startswith("num_units"):
                assert value == raw[key]  # heads and layers are never rounded
                continue
            assert value == 0 if raw[key] == 0 else 0 < value <= 250
            assert value >= raw[key] and (value % step == 0 or value == 250)
            assert value - raw[key] < step  # up to the next multiple, no further
        masks = space.masks(config)
        assert space.masks(raw).shape_signature() == masks.shape_signature()  # masks round what they are given


def test_masks_round_a_config_given_in_units():
    space = get_space("small", DIMS, round_units=8)
    masks = space.masks({"num_layers": 2, "num_heads": 1, "num_units": 1})
    assert masks.kept_units(0) == list(range(8))
    assert space.masks({"num_layers": 1, "num_heads": 1, "num_units": 255}).kept_units(0) == list(range(256))
    assert space.smallest()["num_units"] == 8 and space.largest()["num_units"] == 256
    assert space.middle()["num_units"] % 8 == 0
    assert space.size() == 2 * 4 * 32  # 256 units: 32 distinct multiples of 8


@pytest.mark.parametrize("name", ["layer", "large"])
def test_spaces_without_unit_counts_have_nothing_to_round(name):
    assert get_space(name, DIMS, round_units=8).round_units == 1


@pytest.mark.parametrize("bad", [0, -8, 2.5, True])
def test_a_rounding_below_one_is_refused(bad):
    with pytest.raises(PrunebenchError, match="round_units must be an integer of at least 1"):
        get_space("small", DIMS, round_units=bad)


def test_rounding_removes_the_llm_int8_fp32_fallback():
    """The reason for --round-units: an extracted FFN whose width is a multiple of 4 keeps LLM.int8's int8 kernel."""
    from prunebench.extract import extract
    from prunebench.hardware.variants import VARIANTS, plan_linears
    from prunebench.models import load_model

    loaded = load_model("shape:bert-tiny")
    config = {"num_heads_0": 4, "num_units_0": 37, "num_heads_1": 2, "num_units_1": 130}
    plans = {}
    for step in (1, 4):
        masks = get_space("medium", loaded.dims, round_units=step).masks(config)
        plans[step] = plan_linears(extract(loaded, masks), VARIANTS["int8"], "cuda")
    assert len(plans[1].int8_fp32_fallback) == 2 and plans[1].int8_fallback_weight_share > 0
    assert plans[4].int8_fp32_fallback == () and plans[4].int8_fallback_weight_share == 0
