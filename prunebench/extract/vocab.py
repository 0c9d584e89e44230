"""Vocabulary trimming: keep the word-embedding rows of the tokens a task uses (``models.vocab`` holds the format).

The kept tokens are the tokenizer's special tokens plus every token that occurs in the trim source,
or only the ``top_k`` most frequent of them. The source is a run directory (its task's training split,
tokenised exactly as the run trains: same task, split protocol and ``max_length``) or a data file of
texts (``.txt``: one text per line; ``.csv``, ``.tsv``, ``.jsonl``, ``.json``, ``.parquet``: every text
column). The tokenizer is left as it is; ids outside the kept set read the unknown token's row.

What trimming costs is measured where it can be: for a run, the share of its test split's tokens that
fall outside the kept vocabulary (``TrimResult.test_unseen_share``); the test error before and after
comes from scoring the trimmed model like any other (``prunebench profile RUN --score`` scores a run's
trimmed models beside the others, ``trim_run``).
"""

from __future__ import annotations

import copy
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prunebench.config import TrainConfig, trim_file_suffix
from prunebench.errors import PrunebenchError
from prunebench.models import LoadedModel, load_model
from prunebench.models.vocab import VocabTrim, trim_embeddings
from prunebench.rundir import RunDir, check_data_files, read_run
from prunebench.tasks.rows import load_run_task, tokenised_rows
from prunebench.tasks.tables import (
    READ_ERRORS,
    check_text,
    decode_error,
    is_text_column,
    open_binary,
    read_csv,
    read_json,
)

FILE_MAX_LENGTH = 512  # tokens per text of a data file (a run's own max_length is used for a run)


@dataclass(frozen=True)
class TrimCounts:
    """Token counts of a trim source (training side) and, for a run, its test split's token ids."""

    counts: Counter
    test_ids: list[int] | None
    description: str


@dataclass(frozen=True)
class TrimResult:
    loaded: LoadedModel  # the trimmed model
    kept: int
    source_vocab_size: int
    parameters_before: int
    parameters: int  # counted on the trimmed model
    weight_bytes_before: int
    weight_bytes: int  # parameters and the id lookup buffer, fp32
    test_unseen_share: float | None  # test-split tokens outside the kept vocabulary (a run source only)
    source: str


def _is_run(path: Path) -> bool:
    return path.is_dir() and RunDir(path).is_run()


def token_counts(source: Path, loaded: LoadedModel) -> TrimCounts:
    """How often each token id occurs in ``source`` (a run's training split or a data file's texts)."""
    source = Path(source)
    if source.is_dir() and not _is_run(source):
        raise PrunebenchError(f"--trim-vocab {source} is a folder but not a run; give a run directory or a data file")
    if _is_run(source):
        run = read_run(source)
        if "train" not in run:
            raise PrunebenchError(f"{source} is not a super-network run; give a run with a task or a data file")
        check_data_files(source, run)  # moved or changed data: one line with the way out
        train = TrainConfig.from_dict(run["train"])
        rows = tokenised_rows(load_run_task(train), loaded, train.max_length)
        counts = Counter(token for row in rows["train"] for token in _flat(row["input_ids"]))
        test = [token for row in rows.get("test", []) for token in _flat(row["input_ids"])]
        description = f"training split of run {source} (task {train.task}, max_length {train.max_length})"
        return _checked(TrimCounts(counts, test or None, description), source)
    texts = read_texts(source)
    if not texts:
        raise PrunebenchError(f"--trim-vocab {source} has no text to count tokens in; give a run or a file with texts")
    encoded = loaded.tokenizer(texts, truncation=True, max_length=FILE_MAX_LENGTH)["input_ids"]
    counts = Counter(token for ids in encoded for token in ids)
    return _checked(TrimCounts(counts, None, f"data file {source.name} ({len(texts)} texts)"), source)


def _flat(ids) -> list[int]:
    """A row's token ids (multiple-choice rows hold one list per choice)."""
    return [t for part in ids for t in part] if ids and isinstance(ids[0], list) else list(ids)


def _checked(found: TrimCounts, source: Path) -> TrimCounts:
    if not found.counts:
        raise PrunebenchError(f"--trim-vocab {source} has no text to count tokens in; give a run or a file with texts")
    return found


def read_texts(path: Path) -> list[str]:
    """The non-empty texts of a data file: lines of a .txt, every text column of a table (UTF-8, maybe compressed).

    A text column is one pandas reads as text in any of its dtypes (``str``, ``object``, the nullable ``string``);
    missing cells are skipped, never counted as 'nan' or '<NA>'."""
    path = Path(path)
    suffix = trim_file_suffix(path)
    what, fix = f"--trim-vocab {path}", "save it as UTF-8"
    try:
        if suffix == "txt":
            check_text(path, "utf-8", what, fix)
            with io.TextIOWrapper(open_binary(path), encoding="utf-8") as stream:
                lines = stream.read().removeprefix("\ufeff").splitlines()  # a byte-order mark is not a word
            return [line.strip() for line in lines if line.strip()]
        if suffix in ("jsonl", "json"):
            lines = True if suffix == "jsonl" else None
            frame = read_json(path, lines=lines, encoding="utf-8", text_columns=(), what=what, fix=fix)
        elif suffix == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = read_csv(path, encoding="utf-8", what=what, fix=fix, sep="\t" if suffix == "tsv" else ",")
    except UnicodeDecodeError:
        raise decode_error(path, "utf-8", what, fix) from None
    except READ_ERRORS as error:
        cause = " ".join(str(error).split())[:300]
        raise PrunebenchError(
            f"--trim-vocab cannot read {path} ({cause}); give a readable text or table file"
        ) from None
    return [
        cell.strip()
        for column in frame.columns
        if is_text_column(frame[column])
        for cell in frame[column].tolist()
        if isinstance(cell, str) and cell.strip()
    ]


def kept_ids(loaded: LoadedModel, counts: Counter, top_k: int | None = None) -> list[int]:
    """Special tokens (the unknown token included) plus the seen tokens, or the ``top_k`` most frequent."""
    special = set(loaded.tokenizer.all_special_ids)
    seen = [token for token, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if token not in special]
    if top_k is not None:
        seen = seen[:top_k]
    return sorted(special | set(seen))


def _unknown_id(loaded: LoadedModel) -> int:
    unknown = loaded.tokenizer.unk_token_id
    if unknown is None:
        raise PrunebenchError(
            f"the tokenizer of {loaded.source} has no unknown token; its vocabulary cannot be trimmed"
        )
    return int(unknown)


def trim_vocabulary(loaded: LoadedModel, source: Path, top_k: int | None = None) -> TrimResult:
    """A copy of ``loaded`` with the vocabulary of ``source`` (module docstring); ``loaded`` is left as it is."""
    return trim_with_counts(loaded, token_counts(source, loaded), top_k)


def trim_with_counts(loaded: LoadedModel, found: TrimCounts, top_k: int | None = None) -> TrimResult:
    if loaded.vocab is not None:
        raise PrunebenchError(
            f"{loaded.source} already has a trimmed vocabulary ({loaded.vocab.kept} of "
            f"{loaded.vocab.source_vocab_size} tokens); trim the untrimmed model it came from"
        )
    if top_k is not None and top_k < 1:
        raise PrunebenchError(f"--trim-top-k must be at least 1, got {top_k}")
    unknown = _unknown_id(loaded)
    keep = kept_ids(loaded, found.counts, top_k)
    model = copy.deepcopy(loaded.model)
    before = sum(p.numel() for p in model.parameters())
    table = trim_embeddings(model, keep, unknown)
    parameters = sum(p.numel() for p in model.parameters())
    vocab = VocabTrim(table.vocab_map.numel(), len(keep), unknown, found.description, top_k)
    trimmed = LoadedModel(
        model.eval(), loaded.tokenizer, loaded.adapter, loaded.source, loaded.task_kind, loaded.structure, vocab
    )
    unseen = None
    if found.test_ids:
        kept = set(keep)
        unseen = sum(token not in kept for token in found.test_ids) / len(found.test_ids)
    map_bytes = table.vocab_map.numel() * table.vocab_map.element_size()
    return TrimResult(
        trimmed, len(keep), vocab.source_vocab_size, before, parameters, 4 * before, 4 * parameters + map_bytes,
        unseen, found.description,
    )  # fmt: skip


def trim_summary(result: TrimResult) -> dict:
    """The numbers of a trim, as ``prunebench extract --trim-vocab`` prints them and writes them (trim.json)."""
    return {
        "source": result.source,
        "kept_tokens": result.kept,
        "source_vocab_size": result.source_vocab_size,
        "parameters_before": result.parameters_before,
        "parameters": result.parameters,
        "weight_bytes_before": result.weight_bytes_before,
        "weight_bytes": result.weight_bytes,
        "test_unseen_token_share": result.test_unseen_share,
    }


def write_trim_summary(result: TrimResult, folder: Path) -> None:
    (Path(folder) / "trim.json").write_text(json.dumps(trim_summary(result), indent=2))


# --- a run's own models ----------------------------------------------------------------------------------

TRIMMED_SUFFIX = "+vocab"  # a trimmed model's profile label: the untrimmed model's label and this


@dataclass(frozen=True)
class TrimmedRunModel:
    label: str  # "full+vocab", "SEARCH/LABEL+vocab"
    path: Path
    summary: dict


def trimmed_folder_name(label: str) -> str:
    return label.replace("/", "--")


def source_stamp(model_dir: Path) -> list:
    """The weight files of an untrimmed model directory as [name, size, mtime] entries: what it was trimmed from."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def trim_is_current(trimmed_dir: Path, run_dir: Path) -> bool:
    """Whether a trimmed run model was made from the weights its untrimmed model has now (not a stale trim)."""
    try:
        summary = json.loads((Path(trimmed_dir) / "trim.json").read_text())
        return summary["source_stamp"] == source_stamp(Path(run_dir) / summary["source_path"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def trim_run(run_dir: Path, top_k: int | None = None, overwrite: bool = False) -> list[TrimmedRunModel]:
    """The run's fine-tuned model and every exported Pareto model with the vocabulary of its training split.

    Written to RUN/vocab/LABEL (``rundir.RunDir.vocab_root``) with ``trim.json``; profiling a run takes them as
    ``LABEL+vocab`` (``profiling.subjects.run_subjects``). A model already trimmed from the weights its untrimmed
    model has now is kept (``overwrite``: trimmed again); one trimmed from other weights (a new export under the
    same label) is trimmed again.
    """
    from prunebench.models.pruned import is_pruned_dir, save_pruned

    run_dir = Path(run_dir)
    folder = RunDir(run_dir)
    run = folder.read()
    task = run.get("task") or {}
    if "train" not in run or not folder.has_checkpoint():
        raise PrunebenchError(f"{run_dir} has no fine-tuned checkpoint to trim; run 'prunebench train' first")
    sources = {"full": folder.checkpoint}
    for search, index in folder.exports().items():
        for row in index.itertuples():
            sources[f"{search}/{row.label}"] = run_dir / row.path
    found: TrimCounts | None = None
    results = []
    for label, source in sources.items():
        target = folder.vocab_root / trimmed_folder_name(label)
        if is_pruned_dir(target) and trim_is_current(target, run_dir) and not overwrite:
            summary = json.loads((target / "trim.json").read_text())
            results.append(TrimmedRunModel(label + TRIMMED_SUFFIX, target, summary))
            continue
        stamp = source_stamp(source)  # taken before loading: weights rewritten meanwhile make the trim stale
        if label == "full":
            loaded = load_model(source, task_kind=task["kind"], num_labels=task.get("num_labels") or 2)
        else:
            loaded = load_model(source)
        found = found or token_counts(run_dir, loaded)
        result = trim_with_counts(loaded, found, top_k)
        save_pruned(result.loaded, target, {"model": loaded.source, "trimmed_from": label}, overwrite=True)
        relative = str(Path(source).resolve().relative_to(run_dir.resolve()))
        summary = trim_summary(result) | {"label": label, "source_path": relative, "source_stamp": stamp}
        (target / "trim.json").write_text(json.dumps(summary, indent=2))
        results.append(TrimmedRunModel(label + TRIMMED_SUFFIX, target, summary))
    return results
