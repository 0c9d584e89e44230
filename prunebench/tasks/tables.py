"""Reading data tables: the one reader behind ``--task files`` and ``extract --trim-vocab``.

What it takes care of, so that every format reads the same way under every pandas version:
- decompression (.gz, .bz2, .xz, .zip, .zst) and the encoding (utf-8 unless one is given); a file that does
  not decode is one line naming the file, the encoding tried and the line (not a byte position), with the fix;
- JSON and JSON Lines, read with the standard library: a number in a text column keeps its text from the
  file ("1014", "3.10"), where pandas makes it 1014.0 once a null is in the column; a parse error names its
  line; an object with a key twice is refused;
- a column named twice in a header is refused (pandas would rename the second "text.1" and read the first);
- missing cells of every kind (None, NaN, pandas' NA of nullable columns) count as missing, and text cells
  of every dtype pandas gives text (``object``, ``str``, the nullable ``string``) are text.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import json
import lzma
import zipfile
import zlib
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from prunebench.errors import PrunebenchError

# What goes wrong reading a table, other than a decode error: bad syntax, a damaged archive, a short file.
READ_ERRORS = (ValueError, OSError, EOFError, pd.errors.ParserError, zipfile.BadZipFile, lzma.LZMAError, zlib.error)
_CHUNK = 1 << 20  # bytes scanned at a time when looking for the line that does not decode


def open_binary(path: Path) -> BinaryIO:
    """The file's bytes, decompressed by its last suffix (the suffixes pandas infers compression from)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
            if len(names) != 1:
                raise PrunebenchError(f"{path} holds {len(names)} files; a .zip data file must hold exactly one")
            return io.BytesIO(archive.read(names[0]))
    if suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise PrunebenchError(
                f"{path} is zstd-compressed, which needs the zstandard package: pip install zstandard"
            ) from None
        return zstandard.open(path, "rb")
    return open(path, "rb")


def undecodable_line(path: Path, encoding: str) -> tuple[int, bytes] | None:
    """The first line (from 1) of ``path`` that does not decode with ``encoding``, and its first bad bytes."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with open_binary(path) as stream:
        while chunk := stream.readline(_CHUNK):
            try:
                line += decoder.decode(chunk).count("\n")
            except UnicodeDecodeError as error:
                return line, error.object[error.start : error.end]
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as error:
            return line, error.object[error.start : error.end]
    return None


def decode_error(path: Path, encoding: str, what: str, fix: str) -> PrunebenchError:
    """One line: ``what`` does not decode with ``encoding``, at which line, and ``fix``."""
    try:
        found = undecodable_line(path, encoding)
    except (*READ_ERRORS, PrunebenchError):
        found = None
    where = ""
    if found is not None:
        line, bad = found
        shown = " ".join(f"0x{byte:02x}" for byte in bad[:4])
        where = f" at line {line} (byte{'s' if len(bad) > 1 else ''} {shown})" if bad else f" at line {line}"
    return PrunebenchError(
        f"cannot decode {what} as {encoding}{where}; {fix}, or if the file is not text (binary), "
        "convert it to CSV, TSV, JSON Lines or Parquet"
    )


_SNIFF = 8192  # bytes looked at for NUL bytes, which text in a one-byte or UTF-8 encoding never holds


def check_text(path: Path, encoding: str, what: str, fix: str) -> None:
    """Refuse a binary file (a spreadsheet, an archive, a Parquet file renamed) before a text parser misreads it."""
    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        return  # NUL bytes are part of these encodings
    try:
        with open_binary(path) as stream:
            head = stream.read(_SNIFF)
    except READ_ERRORS:
        return  # the reader reports what is wrong with the file
    marks = {"UTF-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "UTF-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)}
    for name, boms in marks.items():
        if head.startswith(boms):
            raise PrunebenchError(
                f"{what} is not text in {encoding}: it starts with the byte-order mark of {name}; {fix}"
            )
    if b"\x00" in head:
        line = head[: head.index(b"\x00")].count(b"\n") + 1
        raise PrunebenchError(
            f"{what} is not text in {encoding}: it holds NUL bytes (line {line}), as binary files do; convert it "
            f"to CSV, TSV, JSON Lines or Parquet, or if it is text in UTF-16 or UTF-32, {fix}"
        )


def read_csv(path: Path, *, encoding: str, what: str, fix: str, **options) -> pd.DataFrame:
    """``pd.read_csv`` with the encoding; a binary file or a decode error is one line naming the line."""
    check_text(path, encoding, what, fix)
    try:
        return pd.read_csv(path, encoding=encoding, **options)
    except UnicodeDecodeError:
        raise decode_error(path, encoding, what, fix) from None


def header_names(path: Path, sep: str, *, encoding: str, what: str, fix: str) -> list[str]:
    """The first row of a delimited file as written (pandas renames a repeated name when it reads a header)."""
    try:
        head = read_csv(
            path, encoding=encoding, what=what, fix=fix, sep=sep, header=None, nrows=1, dtype=str,
            keep_default_na=False,
        )  # fmt: skip
    except pd.errors.EmptyDataError:
        return []
    return ["" if pd.isna(name) else str(name) for name in head.iloc[0]] if len(head) else []


def check_unique_columns(names: Iterable[str], what: str) -> None:
    """A column named twice is refused: which of the two an option means cannot be told."""
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(names, start=1):
        positions.setdefault(str(name), []).append(position)
    repeated = {name: where for name, where in positions.items() if len(where) > 1}
    if repeated:
        name, where = next(iter(repeated.items()))
        others = f" (and {len(repeated) - 1} more name(s) repeated)" if len(repeated) > 1 else ""
        raise PrunebenchError(
            f"{what} has {len(where)} columns named {name!r} (columns {', '.join(map(str, where[:-1]))} and "
            f"{where[-1]}){others}; "
            "a name must mean one column: rename or drop the repeats"
        )


def parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


# --- JSON and JSON Lines --------------------------------------------------------------------------------


class _RepeatedKey(ValueError):
    pass


def _object(pairs: list[tuple[str, object]]) -> dict:
    found: dict = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKey(key)
        found[key] = value
    return found


def _loads(text: str) -> object:
    # Decimal keeps a number's text ("3.10"); object_pairs_hook sees a key given twice.
    return json.loads(text, parse_float=Decimal, object_pairs_hook=_object)


def read_json(
    path: Path, *, lines: bool | None, encoding: str, text_columns: Iterable[str], what: str, fix: str
) -> pd.DataFrame:
    """A JSON Lines file (``lines``), a JSON array of objects or pandas' column layout (``lines=False``), or
    either (``None``: a document, else lines). Values of ``text_columns`` that are not strings become their
    JSON text; other numbers become floats and ints."""
    check_text(path, encoding, what, fix)
    try:
        with io.TextIOWrapper(open_binary(path), encoding=encoding) as stream:
            text = stream.read()
    except UnicodeDecodeError:
        raise decode_error(path, encoding, what, fix) from None
    text = text.removeprefix("\ufeff")
    records: list[dict] | None = None
    if lines is not True:
        try:
            records = _document_records(_loads(text), what)
        except _RepeatedKey as key:
            raise PrunebenchError(f"{what} has the key {key.args[0]!r} twice in one object; keep one of them") from None
        except json.JSONDecodeError as error:
            if lines is False or not error.msg.startswith("Extra data"):
                raise PrunebenchError(
                    f"{what} is not valid JSON at line {error.lineno}, column {error.colno} ({error.msg}); "
                    "fix that line, or write one JSON object per line (JSON Lines)"
                ) from None
    if records is None:
        records = _line_records(text, what)
    return _frame(records, tuple(text_columns))


def _document_records(document: object, what: str) -> list[dict]:
    if isinstance(document, list) and all(isinstance(row, dict) for row in document):
        return document
    if isinstance(document, dict) and document:
        columns = list(document.values())
        # pandas' default layout: {"column": {"0": value, ...}}, or {"column": [value, ...]}
        if all(isinstance(column, dict) for column in columns):
            keys = list(dict.fromkeys(key for column in columns for key in column))
            return [{name: column.get(key) for name, column in document.items()} for key in keys]
        if all(isinstance(column, list) for column in columns) and len({len(c) for c in columns}) == 1:
            return [dict(zip(document, values, strict=True)) for values in zip(*columns, strict=True)]
    raise PrunebenchError(
        f"{what} is JSON but not a table (an array of objects, or one object per line); "
        "write one JSON object per line (JSON Lines)"
    )


def _line_records(text: str, what: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = _loads(line)
        except _RepeatedKey as key:
            raise PrunebenchError(
                f"line {number} of {what} has the key {key.args[0]!r} twice; keep one of them"
            ) from None
        except json.JSONDecodeError as error:
            raise PrunebenchError(
                f"line {number} of {what} is not valid JSON (column {error.colno}: {error.msg}); fix or drop that line"
            ) from None
        if not isinstance(row, dict):
            raise PrunebenchError(
                f"line {number} of {what} is a JSON {type(row).__name__}, not an object; "
                'write one object per line, e.g. {"text": "...", "label": "..."}'
            )
        records.append(row)
    return records


def _json_text(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, default=str)  # true/false, lists and objects as written in JSON


def _json_value(value: object) -> object:
    return float(value) if isinstance(value, Decimal) else value


def _frame(records: list[dict], text_columns: tuple[str, ...]) -> pd.DataFrame:
    rows = [
        {key: _json_text(value) if key in text_columns else _json_value(value) for key, value in row.items()}
        for row in records
    ]
    frame = pd.DataFrame(rows)
    for column in text_columns:
        if column in frame.columns:  # a column of texts stays a column of strings (and None), never numbers
            frame[column] = pd.Series(frame[column].tolist(), index=frame.index, dtype=object)
    return frame


# --- cells ------------------------------------------------------------------------------------------------


def is_missing(value: object) -> bool:
    """None, NaN, pandas' NA and NaT: a cell with no value, in every dtype pandas reads."""
    if isinstance(value, str):
        return False
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def text_of(value: object) -> str:
    """A cell as text: '' when missing (not 'nan', 'None' or '<NA>')."""
    return "" if is_missing(value) else str(value)


def text_values(values: pd.Series | Iterable[object]) -> list[str]:
    return [text_of(value) for value in (values.tolist() if isinstance(values, pd.Series) else values)]


def is_text_column(column: pd.Series) -> bool:
    """A column of texts in any of pandas' dtypes for them: ``str``, the nullable ``string``, or ``object``."""
    return bool(pd.api.types.is_string_dtype(column.dtype) or column.dtype == object)
