"""Stage two: multi-objective search over sub-networks of a fine-tuned super-network.

- ``run_search(RUN, SearchConfig(...))``: a method (``METHODS``) proposes configs through one
  ask/tell interface, ``CandidateEvaluator`` scores them with the shared weights, every result
  is appended to the search log, and the run directory gets the candidates, the Pareto set
  (with test-split metrics) and the hypervolume curves;
- ``objectives``: error and costs, normalised the same way in every run;
- ``pareto``: non-dominated sort and hypervolume (pymoo) against a fixed reference point;
- ``extract_pareto``: the Pareto set extracted as pruned models into the search's models folder;
- ``nas``: standard NAS, every sub-network fine-tuned in isolation (syne-tune, MO-ASHA).
"""

from prunebench.search.evaluator import CandidateEvaluator, EvalSettings
from prunebench.search.extract_pareto import ParetoExport, export_pareto
from prunebench.search.methods import METHODS, Method, MethodContext, get_method, initial_design
from prunebench.search.objectives import OBJECTIVES, CostObjectives, ObjectiveSettings, parse_objectives
from prunebench.search.pareto import REFERENCE, hypervolume, hypervolume_curve, non_dominated
from prunebench.search.runner import SearchConfig, SearchResult, run_search

__all__ = [
    "METHODS",
    "OBJECTIVES",
    "REFERENCE",
    "CandidateEvaluator",
    "CostObjectives",
    "EvalSettings",
    "Method",
    "MethodContext",
    "ObjectiveSettings",
    "ParetoExport",
    "SearchConfig",
    "SearchResult",
    "export_pareto",
    "get_method",
    "hypervolume",
    "hypervolume_curve",
    "initial_design",
    "non_dominated",
    "parse_objectives",
    "run_search",
]
