"""Make the small GLUE samples in tests/data/glue from the full GLUE TSV files.

    python tests/data/make_glue_samples.py ../shared/data/glue tests/data/glue

Each sample is a set of whole lines of the original file, byte for byte, in the original order:
the header line (where the file has one), the first data row, the rows a test relies on (listed
in ``KEEP``) and a seeded random choice of the other rows. A file without a final newline keeps
that quirk. The originals are checked against their SHA-256 first; the script prints, per sample,
the figures that go into tests/data/glue/PROVENANCE.md (rows, label counts, mean score, SHA-256).
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

# (folder, file): (SHA-256 of the original, data rows to keep in the sample, has a header line)
SOURCES = {
    ("SST-2", "train.tsv"): ("48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1", 200, True),
    ("SST-2", "dev.tsv"): ("54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0", 60, True),
    ("RTE", "train.tsv"): ("41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c", 80, True),
    ("RTE", "dev.tsv"): ("80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb", 40, True),
    ("MRPC", "train.tsv"): ("122becc469405bc16f9defcb8715d2a4b7ce600e9d9381e6dc42bfdd1494c51d", 120, True),
    ("MRPC", "dev.tsv"): ("81c8a1a9e1dfe461dd2c1a4f98f43fe18bece44d2bf9e3d0b245b88e5aa5eaf7", 40, True),
    ("CoLA", "train.tsv"): ("cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624", 200, False),
    ("CoLA", "dev.tsv"): ("8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd", 60, False),
    ("STS-B", "train.tsv"): ("41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2", 360, True),
    ("STS-B", "dev.tsv"): ("fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59", 80, True),
    ("QNLI", "dev.tsv"): ("763e95932dd3578251de71582e06829015f9c3815a518c751dc537219b159de4", 40, True),
}


def _bare_numbers(rows: list[bytes]) -> list[int]:
    """The SST-2 rows whose sentence is a bare number (the five rows the restoration put back)."""
    return [i for i, row in enumerate(rows) if row.split(b"\t")[0].strip().replace(b",", b"").isdigit()]


def _longest(rows: list[bytes]) -> list[int]:
    """The longest row (RTE dev: a pair far over 128 tokens, so truncation is exercised)."""
    return [max(range(len(rows)), key=lambda i: len(rows[i]))]


def _last(rows: list[bytes]) -> list[int]:
    """The last row (CoLA dev: the line without a final newline)."""
    return [len(rows) - 1]


# Data rows (0-based, header not counted) that a sample keeps besides the first one.
KEEP = {("SST-2", "train.tsv"): _bare_numbers, ("RTE", "dev.tsv"): _longest, ("CoLA", "dev.tsv"): _last}
LABEL_COLUMN = {"SST-2": 1, "RTE": 3, "MRPC": 0, "CoLA": 1, "STS-B": 9, "QNLI": 3}
POSITIVE = {"SST-2": b"1", "RTE": b"not_entailment", "MRPC": b"1", "CoLA": b"1", "QNLI": b"not_entailment"}


def sample_file(source: Path, target: Path, key: tuple[str, str]) -> str:
    expected, size, has_header = SOURCES[key]
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        sys.exit(f"{source}: SHA-256 {digest} is not the published {expected}; use the files PROVENANCE.md names")
    lines = data.split(b"\n")
    final_newline = lines[-1] == b""
    if final_newline:
        lines.pop()
    header, rows = (lines[:1], lines[1:]) if has_header else ([], lines)
    forced = {0, *(KEEP[key](rows) if key in KEEP else [])}
    rest = [i for i in range(len(rows)) if i not in forced]
    chosen = sorted(
        forced | set(random.Random(f"prunebench-glue-sample:{key[0]}/{key[1]}").sample(rest, size - len(forced)))
    )
    out = b"\n".join(header + [rows[i] for i in chosen]) + (b"\n" if final_newline else b"")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(out)
    labels = [rows[i].split(b"\t")[LABEL_COLUMN[key[0]]].strip() for i in chosen]
    if key[0] == "STS-B":
        scores = [float(v) for v in labels]
        stats = f"mean score {sum(scores) / len(scores):.4f}"
    else:
        stats = f"{sum(v == POSITIVE[key[0]] for v in labels)} of label {POSITIVE[key[0]].decode()}"
    return (
        f"| {key[0]} | {key[1][:-4]} | {len(chosen)} | {stats} | {len(out):,} | `{hashlib.sha256(out).hexdigest()}` |"
    )


def main(source_root: Path, target_root: Path) -> None:
    for key in SOURCES:
        print(sample_file(source_root.joinpath(*key), target_root.joinpath(*key), key))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
