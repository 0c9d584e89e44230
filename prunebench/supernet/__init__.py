"""Super-network: search spaces, masking, exact counts, gradient importance (and ordering by it), training strategies
and stage-one training."""

from prunebench.supernet.counting import CostModel
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.supernet.spaces import SPACES, Config, Masks, SearchSpace, get_space

__all__ = ["SPACES", "Config", "CostModel", "Masks", "MaskedSuperNetwork", "SearchSpace", "get_space"]
