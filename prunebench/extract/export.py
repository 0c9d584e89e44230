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
from prunebench.extract.vocab import TrimCounts, token_counts, trim_summary, trim_with_counts, write_trim_summary
from prunebench.models import LoadedModel, load_model
from prunebench.models.pruned import save_pruned
from prunebench.rundir import check_output
from prunebench.supernet.counting import CostModel
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.supernet.spaces import Config, Masks, SearchSpace, get_space

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
    trim: dict | None = None  # with a trimmed vocabulary: ``extract.vocab.trim_summary``


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
    trim: TrimCounts | None = None,
    trim_top_k: int | None = None,
) -> list[ExtractedModel]:
    """Write each named config as a pruned model under ``out_dir`` (``out_dir`` itself for a single unnamed one).

    ``trim``: each model also gets the vocabulary of those token counts (``extract.vocab``); verified, the
    trimmed model is compared with the untrimmed one fed the unknown token for every id it no longer keeps.
    """
    targets = {name: (out_dir / name if name else out_dir) for name in configs}
    for target in targets.values():
        check_output(target, overwrite)  # refuse before anything is written
    cost = CostModel.for_model(loaded)
    supernet = MaskedSuperNetwork(loaded) if verify else None
    batch = verification_batch(loaded) if verify else None
    results = []
    try:
        for name, config in configs.items():
            masks = space.masks(config) if config is not None else None
            pruned = extract(loaded, masks) if masks is not None else loaded
            diff = trimmed = None
            if supernet is not None and masks is not None:
                with supernet.masked(masks), torch.no_grad():
                    masked_logits = loaded.model(**batch).logits
                    diff = (masked_logits - pruned.model(**batch).logits).abs().max().item()
            if trim is not None:
                trimmed = trim_with_counts(pruned, trim, trim_top_k)
                if verify:
                    diff = max(diff or 0.0, trimmed_difference(pruned, trimmed.loaded, batch))
                pruned = trimmed.loaded
            provenance = {"model": loaded.source, "space": space.name if masks is not None else None, "config": config}
            path = save_pruned(pruned, targets[name], provenance, overwrite=overwrite)
            if trimmed is not None:
                write_trim_summary(trimmed, path)
            masks = masks if masks is not None else Masks.full(loaded.dims)
            counts = cost if trimmed is None else CostModel.for_model(pruned)  # the trimmed table's exact size
            results.append(
                ExtractedModel(
                    path=path,
                    config=config,
                    parameters=sum(p.numel() for p in pruned.model.parameters()),
                    analytic_parameters=counts.parameters(masks),
                    relative_parameters=counts.relative_parameters(masks),
                    encoder_parameters=cost.encoder_parameters(masks),
                    encoder_fraction=cost.encoder_fraction(masks),
                    macs=cost.macs(masks, seq_len),
                    seq_len=seq_len,
                    max_abs_diff=diff,
                    trim=trim_summary(trimmed) if trimmed is not None else None,
                )
            )
    finally:
        if supernet is not None:
            supernet.remove()
    return results


def trimmed_difference(untrimmed: LoadedModel, trimmed: LoadedModel, batch: dict) -> float:
    """Largest logit difference: ``trimmed`` against ``untrimmed`` fed the unknown token for every id not kept.

    The two compute the same function, so anything above float rounding is a wrong row or lookup.
    """
    vocab_map = trimmed.model.get_input_embeddings().vocab_map
    unknown_row = int(vocab_map[trimmed.vocab.unknown_id])
    ids = batch["input_ids"]
    dropped = (vocab_map[ids] == unknown_row) & (ids != trimmed.vocab.unknown_id)
    plain = {**batch, "input_ids": ids.masked_fill(dropped, trimmed.vocab.unknown_id)}
    with torch.no_grad():
        return (untrimmed.model(**plain).logits - trimmed.model(**batch).logits).abs().max().item()


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
    space = get_space(config.space, loaded.dims, config.round_units)
    if config.config is not None:
        configs = {"": space.validate(read_config(config.config))}
    elif config.random is not None:
        rng = np.random.default_rng(config.seed)
        configs = {f"subnet-{i:03d}": space.sample(rng) for i in range(config.random)}
    else:
        configs = {"": None}  # --trim-vocab alone: the un-pruned model with a trimmed vocabulary
    trim = token_counts(Path(config.trim_vocab), loaded) if config.trim_vocab is not None else None
    if trim is not None and loaded.vocab is not None:
        raise PrunebenchError(
            f"{model} already has a trimmed vocabulary ({loaded.vocab.kept} of {loaded.vocab.source_vocab_size} "
            "tokens); trim the untrimmed model it came from"
        )
    results = export_subnetworks(
        loaded, space, configs, Path(out_dir), verify=config.verify, overwrite=overwrite, seq_len=config.seq_len,
        trim=trim, trim_top_k=config.trim_top_k,
    )  # fmt: skip
    worst = max((r.max_abs_diff for r in results if r.max_abs_diff is not None), default=0.0)
    if worst > VERIFY_TOLERANCE:
        raise PrunebenchError(f"verification failed: logit difference {worst:.3e} exceeds {VERIFY_TOLERANCE:g}")
    return space, results
