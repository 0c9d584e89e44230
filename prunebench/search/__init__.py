"""Stage two: multi-objective search over sub-networks of a fine-tuned super-network.

Its settings (``SearchConfig``, ``ObjectiveSettings``, ``EvalSettings``) live in ``prunebench.config``
and are re-exported here.

- ``run_search(RUN, SearchConfig(...))``: a method (``METHODS``) proposes configs through one
  ask/tell interface, ``CandidateEvaluator`` scores them with the shared weights, every result
  is appended to the search log, and the run directory gets the candidates, the Pareto set
  (with test-split metrics) and the hypervolume curves;
- ``objectives``: error and costs, normalised the same way in every run;
- ``pareto``: non-dominated sort and hypervolume (pymoo) against a fixed reference point;
- ``extract_pareto``: the Pareto set extracted as pruned models into the search's models folder;
- ``nas``: standard NAS, every sub-network fine-tuned in isolation (syne-tune, MO-ASHA).
"""

from prunebench.config import OBJECTIVES, EvalSettings, ObjectiveSettings, SearchConfig, parse_objectives
from prunebench.search.evaluator import CandidateEvaluator
from prunebench.search.extract_pareto import ParetoExport, export_pareto
from prunebench.search.methods import METHODS, Method, MethodContext, get_method, initial_design
from prunebench.search.objectives import CostObjectives
from prunebench.search.pareto import REFERENCE, hypervolume, hypervolume_curve, non_dominated
from prunebench.search.runner import SearchResult, run_search

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
