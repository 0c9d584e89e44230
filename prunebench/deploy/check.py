"""Checked, not assumed: an export folder run in a separate process without prunebench, against ``load_model``.

``check_export(loaded, folder)`` writes the check sentences (real review snippets and sentence pairs,
padded in batches) to a temporary file, runs ``standalone.py`` on the folder with this Python (a new
process where ``import prunebench`` fails), and compares what it got with ``loaded``'s logits on the
same sentences tokenized by ``loaded``'s own tokenizer:

- the token ids must be the same (the folder's ``tokenizer.json`` alone gives what prunebench's tokenizer gives);
- ``model.onnx`` and the PyTorch folder: largest absolute logit difference within ``VERIFY_TOLERANCE``;
- ``model-int8.onnx``: within ``int8_tolerance`` (``INT8_TOLERANCE`` times the largest |fp32 logit| of the
  batch, or ``INT8_TOLERANCE`` itself when no logit is above 1) and the same predicted class wherever the
  fp32 model's top two logits are further apart than that (closer, int8 rounding may decide either way,
  and a random-weight test model is often that close).

``INT8_TOLERANCE`` is measured, not chosen to pass: ONNX Runtime's dynamic int8 (``quantize_dynamic``,
what the ``onnx-int8`` profile rows run; the embeddings are int8 too) moved the logits on these sentences
by at most 7.8e-3 for MiniLM (mean pooling), 6.5e-2 for a MiniLM sub-network with uneven layers and one
without heads, and 3.7e-2 for a pruned, vocabulary-trimmed bert-tiny (hidden width 64), each with an
untrained head whose logits are below 0.05 (``benchmarks/results/export.json``). 0.1 admits those; with a
trained head (logits of a few units) the bound grows with the logits. With an untrained head the logits
are that small, so no sentence is decisive and the argmax check has nothing to judge: ``int8_decisive``
says how many sentences it judged, ``int8_argmax_agreement_all`` is the agreement on every sentence.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunebench.deploy import standalone
from prunebench.errors import PrunebenchError
from prunebench.extract import VERIFY_TOLERANCE
from prunebench.extract.export import _SAMPLE_PAIRS
from prunebench.models import LoadedModel

INT8_TOLERANCE = 0.1
CHECK_TIMEOUT_S = 600
_SINGLE_SENTENCES = [
    "A gripping, beautifully acted film.",
    "Dull, predictable and far too long.",
    "The soundtrack is the best thing about it, which says a lot.",
    "I laughed, I cried, I checked my watch twice.",
]
# Two padded batches: sentence pairs (segment ids exercised) and single sentences.
CHECK_BATCHES = [[list(pair) for pair in _SAMPLE_PAIRS], [[text, None] for text in _SINGLE_SENTENCES]]


@dataclass(frozen=True)
class ExportCheck:
    """What the separate process computed, against ``load_model``, on ``sentences`` sentences."""

    sentences: int
    max_abs_diff: dict[str, float]  # "onnx_fp32", "onnx_int8", "pytorch": largest absolute logit difference
    tolerance: dict[str, float]
    int8_argmax_agreement: float | None  # share of decisive sentences (see above) with the same class
    int8_decisive: int | None  # how many sentences that share is over
    int8_argmax_agreement_all: float | None  # the same class on every sentence, decisive or not (information)
    process: str = "separate Python process, import prunebench blocked; onnxruntime 1 thread"


def reference_logits(loaded: LoadedModel, batch: list[list]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``loaded``'s inputs and logits on one check batch, tokenized by its own tokenizer."""
    texts = [text for text, _ in batch]
    pairs = [pair for _, pair in batch]
    inputs = loaded.tokenizer(
        texts, pairs if any(p is not None for p in pairs) else None, padding=True, truncation=True,
        return_tensors="pt", return_token_type_ids=loaded.adapter.uses_token_type_ids,
    )  # fmt: skip
    with torch.no_grad():
        logits = loaded.model(**inputs).logits.numpy()
    return {name: value.numpy() for name, value in inputs.items()}, logits


def run_standalone(folder: Path) -> dict[str, np.ndarray]:
    """``standalone.py`` on ``folder`` in a new process; its arrays (token ids, logits)."""
    with tempfile.TemporaryDirectory(prefix="prunebench-check-") as scratch:
        sentences, out = Path(scratch) / "sentences.json", Path(scratch) / "out.npz"
        sentences.write_text(json.dumps(CHECK_BATCHES))
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        env.pop("PYTHONPATH", None)  # as a user's process: only what is installed (prunebench is blocked anyway)
        script = Path(scratch) / "standalone.py"  # run from a copy, so no prunebench folder is on its path
        shutil.copyfile(standalone.__file__, script)
        done = subprocess.run(
            [sys.executable, str(script), str(Path(folder).resolve()), str(sentences), str(out)],
            capture_output=True, text=True, env=env, timeout=CHECK_TIMEOUT_S, cwd=scratch,
        )  # fmt: skip
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PrunebenchError(f"the export did not run without prunebench ({last}); nothing was written")
        with np.load(out) as arrays:
            return dict(arrays)


def int8_bound(reference: np.ndarray) -> float:
    """How far int8 logits may be from fp32 ones: ``INT8_TOLERANCE``, relative to logits larger than 1."""
    return INT8_TOLERANCE * max(1.0, float(np.abs(reference).max()))


def check_export(loaded: LoadedModel, folder: Path) -> ExportCheck:
    """Run ``folder`` without prunebench and compare it with ``loaded``; a failure is an error (see the module)."""
    got = run_standalone(folder)
    diffs: dict[str, float] = {}
    tolerance: dict[str, float] = {}
    over: list[str] = []
    agree = decisive = agree_all = 0
    for index, batch in enumerate(CHECK_BATCHES):
        inputs, reference = reference_logits(loaded, batch)
        for name, value in inputs.items():
            if not np.array_equal(value, got[f"{name}_{index}"]):
                raise PrunebenchError(
                    f"the exported tokenizer.json gives other {name} than the model's tokenizer; nothing was written"
                )
        bounds = {"onnx_fp32": VERIFY_TOLERANCE, "pytorch": VERIFY_TOLERANCE, "onnx_int8": int8_bound(reference)}
        for kind, bound in bounds.items():
            if f"{kind}_{index}" not in got:
                continue
            diff = float(np.abs(got[f"{kind}_{index}"] - reference).max())
            diffs[kind], tolerance[kind] = max(diffs.get(kind, 0.0), diff), max(tolerance.get(kind, 0.0), bound)
            if diff > bound:
                over.append(f"{kind} {diff:.2e} > {bound:.2g}")
        if f"onnx_int8_{index}" in got and reference.shape[-1] > 1:
            top2 = np.sort(reference, axis=-1)[:, -2:]
            sure = (top2[:, 1] - top2[:, 0]) > bounds["onnx_int8"]
            same = got[f"onnx_int8_{index}"].argmax(-1) == reference.argmax(-1)
            agree, decisive = agree + int((same & sure).sum()), decisive + int(sure.sum())
            agree_all += int(same.sum())
    if decisive and agree < decisive:
        over.append(f"onnx_int8 predicts another class on {decisive - agree} of {decisive} sentences")
    if over:
        raise PrunebenchError(f"the export does not match load_model ({'; '.join(over)}); nothing was written")
    has_int8 = "onnx_int8" in diffs
    return ExportCheck(
        sentences=sum(len(batch) for batch in CHECK_BATCHES),
        max_abs_diff=diffs,
        tolerance=tolerance,
        int8_argmax_agreement=(agree / decisive if decisive else None) if has_int8 else None,
        int8_decisive=decisive if has_int8 else None,
        int8_argmax_agreement_all=agree_all / sum(len(batch) for batch in CHECK_BATCHES) if has_int8 else None,
    )
