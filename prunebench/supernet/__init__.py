"""Super-network: search spaces, masking, extraction, exact counts (training comes with the fine-tuning issue)."""

from prunebench.supernet.counting import CostModel
from prunebench.supernet.extraction import extract
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.supernet.spaces import SPACES, Config, Masks, SearchSpace, get_space

__all__ = ["SPACES", "Config", "CostModel", "Masks", "MaskedSuperNetwork", "SearchSpace", "extract", "get_space"]
