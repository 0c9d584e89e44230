"""Run an export folder the way a user without prunebench would: the check's second process.

``python standalone.py FOLDER SENTENCES.json OUT.npz`` blocks ``import prunebench`` first, then
tokenizes each batch of SENTENCES (a list of batches, each a list of ``[text, pair or null]``) with
``tokenizers`` from ``FOLDER/tokenizer.json`` (padding and truncation are set in the file), runs every
ONNX file with ``onnxruntime`` (one thread) and, when ``FOLDER/config.json`` is there, the PyTorch model
through ``transformers`` (``trust_remote_code``), and saves the token ids and logits to OUT.npz.
Standalone on purpose: it imports numpy, tokenizers, onnxruntime, torch and transformers only.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path

ONNX_FILES = {"onnx_fp32": "model.onnx", "onnx_int8": "model-int8.onnx"}


class _Blocked(importlib.abc.MetaPathFinder):
    """Makes ``import prunebench`` fail, so nothing here can lean on it unnoticed."""

    def find_spec(self, name, path=None, target=None):
        if name == "prunebench" or name.startswith("prunebench."):
            raise ImportError(f"{name} is blocked: an export must run without prunebench")
        return None


def main(folder: Path, sentences: Path, out: Path) -> None:
    sys.meta_path.insert(0, _Blocked())
    import numpy as np
    import onnxruntime
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    batches = json.loads(sentences.read_text())
    arrays: dict[str, np.ndarray] = {}
    feeds = []
    for index, batch in enumerate(batches):
        pairs = [text if pair is None else (text, pair) for text, pair in batch]
        encoded = tokenizer.encode_batch(pairs)
        feed = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        feeds.append(feed)
        arrays |= {f"{name}_{index}": value for name, value in feed.items()}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    for key, name in ONNX_FILES.items():
        if (folder / name).is_file():
            session = onnxruntime.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
            wanted = [i.name for i in session.get_inputs()]
            for index, feed in enumerate(feeds):
                arrays[f"{key}_{index}"] = session.run(["logits"], {n: feed[n] for n in wanted})[0]
    if (folder / "config.json").is_file():
        import torch
        from transformers import AutoModelForSequenceClassification

        torch.set_num_threads(1)
        # RoBERTa has one token type: its segment ids are not an input (as in the ONNX graph)
        family = json.loads((folder / "config.json").read_text()).get("family")
        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if family == "bert" else [])
        model, info = AutoModelForSequenceClassification.from_pretrained(
            folder, trust_remote_code=True, output_loading_info=True
        )
        problems = {k: sorted(v) for k, v in info.items() if v}
        if problems:
            raise SystemExit(f"transformers loaded the model with {problems}")
        with torch.no_grad():
            for index, feed in enumerate(feeds):
                inputs = {name: torch.from_numpy(feed[name]) for name in names}
                arrays[f"pytorch_{index}"] = model.eval()(**inputs).logits.numpy()
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
