"""Extract sub-networks to disk and check them against the masked super-network.

``extract_subnetworks(model, ExtractConfig(...), out)`` is ``prunebench extract``: one config
(JSON) or N random ones of a space, each written as a pruned model; ``export_subnetworks`` writes
named configs of a loaded model (the Pareto export uses it too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunebench.config import ExtractConfig
from prunebench.errors import PrunebenchError
from prunebench.extract.extraction import extract
from prunebench.models import LoadedModel, load_model
from prunebench.models.pruned import save_pruned
from prunebench.rundir import check_output
from prunebench.supernet.counting import CostModel
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.supernet.spaces import Config, SearchSpace, get_space

VERIFY_TOLERANCE = 1e-4
_SAMPLE_PAIRS = [
    ("A quiet film that earns every one of its small surprises.", "The reviewer liked it."),
    ("Too long, too loud and far too pleased with itself.", "The reviewer disliked it."),
    ("It works.", "Fine."),
    ("An uneven but often touching story about two brothers who never learned to talk.", "Mixed."),
]


@dataclass(frozen=True)
class ExtractedModel:
    path: Path
    config: Config
    parameters: int  # counted on the saved model
    analytic_parameters: int
    relative_parameters: float  # all parameters / the full model's (what the file holds)
    encoder_parameters: int
    encoder_fraction: float  # encoder parameters / the full encoder's (what pruning removed)
    macs: int
    seq_len: int
    max_abs_diff: float | None  # masked vs extracted logits, when verified


def verification_batch(loaded: LoadedModel, num_choices: int = 2) -> dict[str, torch.Tensor]:
    """Real sentences of different lengths, padded, so masks and padding are both exercised."""
    first, second = zip(*_SAMPLE_PAIRS, strict=True)
    batch = loaded.tokenizer(
        list(first),
        list(second),
        padding=True,
        return_tensors="pt",
        return_token_type_ids=loaded.adapter.uses_token_type_ids,
    )
    if loaded.task_kind == "multiple_choice":
        batch = {k: v.unsqueeze(1).expand(-1, num_choices, -1).contiguous() for k, v in batch.items()}
    return dict(batch)


def export_subnetworks(
    loaded: LoadedModel,
    space: SearchSpace,
    configs: dict[str, Config],
    out_dir: Path,
    *,
    verify: bool = False,
    overwrite: bool = False,
    seq_len: int = 128,
) -> list[ExtractedModel]:
    """Write each named config as a pruned model under ``out_dir`` (``out_dir`` itself for a single unnamed one)."""
    targets = {name: (out_dir / name if name else out_dir) for name in configs}
    for target in targets.values():
        check_output(target, overwrite)  # refuse before anything is written
    cost = CostModel.for_model(loaded)
    supernet = MaskedSuperNetwork(loaded) if verify else None
    batch = verification_batch(loaded) if verify else None
    results = []
    try:
        for name, config in configs.items():
            masks = space.masks(config)
            pruned = extract(loaded, masks)
            diff = None
            if supernet is not None:
                with supernet.masked(masks), torch.no_grad():
                    masked_logits = loaded.model(**batch).logits
                    diff = (masked_logits - pruned.model(**batch).logits).abs().max().item()
            provenance = {"model": loaded.source, "space": space.name, "config": config}
            path = save_pruned(pruned, targets[name], provenance, overwrite=overwrite)
            results.append(
                ExtractedModel(
                    path=path,
                    config=config,
                    parameters=sum(p.numel() for p in pruned.model.parameters()),
                    analytic_parameters=cost.parameters(masks),
                    relative_parameters=cost.relative_parameters(masks),
                    encoder_parameters=cost.encoder_parameters(masks),
                    encoder_fraction=cost.encoder_fraction(masks),
                    macs=cost.macs(masks, seq_len),
                    seq_len=seq_len,
                    max_abs_diff=diff,
                )
            )
    finally:
        if supernet is not None:
            supernet.remove()
    return results


def read_config(text: str) -> dict:
    """A sub-network config given as inline JSON or as the path of a JSON file."""
    source = Path(text)
    raw = source.read_text() if source.suffix == ".json" or source.is_file() else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise PrunebenchError(
            f"--config is not valid JSON ({error.msg} at char {error.pos}); pass a JSON object or a .json file"
        ) from None


def extract_subnetworks(
    model: str | Path, config: ExtractConfig, out_dir: Path, overwrite: bool = False
) -> tuple[SearchSpace, list[ExtractedModel]]:
    """``prunebench extract``: ``config``'s sub-networks of ``model`` as pruned models under ``out_dir``.

    One config is written to ``out_dir`` itself, random ones to ``out_dir/subnet-NNN``. With ``verify``, a
    logit difference to the masked super-network above ``VERIFY_TOLERANCE`` is an error (the models stay).
    """
    loaded = load_model(model, task_kind=config.task_kind, num_labels=config.num_labels, seed=config.seed)
    space = get_space(config.space, loaded.dims)
    if config.config is not None:
        configs = {"": space.validate(read_config(config.config))}
    else:
        rng = np.random.default_rng(config.seed)
        configs = {f"subnet-{i:03d}": space.sample(rng) for i in range(config.random)}
    results = export_subnetworks(
        loaded, space, configs, Path(out_dir), verify=config.verify, overwrite=overwrite, seq_len=config.seq_len
    )
    worst = max((r.max_abs_diff for r in results if r.max_abs_diff is not None), default=0.0)
    if worst > VERIFY_TOLERANCE:
        raise PrunebenchError(f"verification failed: logit difference {worst:.3e} exceeds {VERIFY_TOLERANCE:g}")
    return space, results
