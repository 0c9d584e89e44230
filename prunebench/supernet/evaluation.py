"""Score a model (or the super-network under its current masks) on a tokenised split."""

from __future__ import annotations

import numpy as np
import torch


def batches(rows: list[dict], collator, batch_size: int):
    """Length-sorted batches: less padding, same predictions (order is restored by the caller)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]) if rows else 0)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        yield chunk, collator([rows[i] for i in chunk])


def predict(
    model: torch.nn.Module, rows: list[dict], collator, device: torch.device, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for ``rows`` (tokenised examples), in the order of ``rows``."""
    was_training = model.training
    model.eval()
    logits: list[np.ndarray | None] = [None] * len(rows)
    labels = np.array([row["labels"] for row in rows])
    with torch.inference_mode():
        for chunk, batch in batches(rows, collator, batch_size):
            batch.pop("labels", None)
            out = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
            for position, index in enumerate(chunk):
                logits[index] = out[position]
    model.train(was_training)
    return np.stack(logits) if rows else np.zeros((0,)), labels
