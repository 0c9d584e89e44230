"""Extract sub-networks to disk and check them against the masked super-network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from prunebench.extract.extraction import extract
from prunebench.models.loaded import LoadedModel
from prunebench.models.pruned import check_writable_target, save_pruned
from prunebench.supernet.counting import CostModel
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.supernet.spaces import Config, SearchSpace

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
    relative_parameters: float
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
        check_writable_target(target, overwrite)  # refuse before anything is written
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
                    macs=cost.macs(masks, seq_len),
                    seq_len=seq_len,
                    max_abs_diff=diff,
                )
            )
    finally:
        if supernet is not None:
            supernet.remove()
    return results
