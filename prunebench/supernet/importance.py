"""Gradient-based importance of attention heads and FFN units: the ``importance`` baseline's scores and the
order of an importance-ordered super-network (``TrainConfig.order_by_importance``), from one function.

After Michel et al. (2019), "Are Sixteen Heads Really Better than One?": every head and unit
gets a gate ``m = 1`` multiplied into its output; its importance is the accumulated
``|dL/dm|`` of the task loss (MSE for regression) over training batches (the full network, no dropout), then
normalised by the L2 norm within each layer so that layers compare. Gates are applied with
hooks on the same tensors the super-network masks (the concatenated heads entering the
attention output projection, the intermediate activations), and removed afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from prunebench.errors import PrunebenchError
from prunebench.models.loaded import LoadedModel
from prunebench.supernet.losses import task_loss
from prunebench.tasks.rows import make_batches


def gradient_importance(
    loaded: LoadedModel, rows: list[dict], collator, batch_size: int = 32, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Importance scores, heads (L, H) and units (L, I), from ``rows`` (tokenised training examples)."""
    dims, adapter, model = loaded.dims, loaded.adapter, loaded.model
    head_gates = torch.ones(dims.num_layers, dims.num_heads, requires_grad=True, device=device)
    unit_gates = torch.ones(dims.num_layers, dims.intermediate_size, requires_grad=True, device=device)
    handles = []
    for index, layer in enumerate(adapter.encoder_layers(model)):
        parts = adapter.layer_parts(layer)

        def head_hook(module, args, index=index):
            gate = head_gates[index].repeat_interleave(dims.head_size).to(args[0].dtype)
            return (args[0] * gate,) + args[1:]

        def unit_hook(module, args, output, index=index):
            return output * unit_gates[index].to(output.dtype)

        handles.append(parts.attention_output.register_forward_pre_hook(head_hook))
        handles.append(parts.intermediate.register_forward_hook(unit_hook))
    trainable = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    for parameter in trainable:
        parameter.requires_grad_(False)  # only the gates' gradients are needed
    heads = torch.zeros_like(head_gates)
    units = torch.zeros_like(unit_gates)
    model.eval()
    try:
        dtype = torch.float32 if loaded.task_kind == "regression" else torch.long
        for batch in make_batches(rows, collator, batch_size):
            labels = torch.tensor([rows[i]["labels"] for i in batch.rows], dtype=dtype, device=device)
            logits = model(**{k: v.to(device) for k, v in batch.inputs.items()}).logits
            loss = task_loss(logits, labels, loaded.task_kind)
            head_grad, unit_grad = torch.autograd.grad(loss, [head_gates, unit_gates])
            heads += head_grad.abs()
            units += unit_grad.abs()
    finally:
        for handle in handles:
            handle.remove()
        for parameter in trainable:
            parameter.requires_grad_(True)
        model.train(was_training)
    return _per_layer_normalised(heads), _per_layer_normalised(units)


def _per_layer_normalised(scores: torch.Tensor) -> np.ndarray:
    norms = scores.norm(dim=1, keepdim=True).clamp_min(1e-20)
    return (scores / norms).detach().cpu().numpy()


def importance_order(scores: np.ndarray) -> np.ndarray:
    """Per row (layer), the indices by decreasing score; ties keep the original order, so equal scores move nothing."""
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")


def reorder(loaded: LoadedModel, head_orders: np.ndarray, unit_orders: np.ndarray) -> None:
    """Rewrite every layer so that its heads and units come in the given orders (rows of indices), in place.

    An exact reparameterisation (the full network's outputs do not change); the spaces' first k heads and units
    of a layer become those listed first. Refused, one line, for a family whose adapter cannot reorder.
    """
    adapter = loaded.adapter
    if not adapter.can_reorder:
        raise PrunebenchError(
            f"{loaded.source}: its model family ({loaded.model.config.model_type}) has no adapter for reordering heads "
            "and units; train without --order-by-importance"
        )
    layers = adapter.encoder_layers(loaded.model)
    for layer, heads, units in zip(layers, np.asarray(head_orders), np.asarray(unit_orders), strict=True):
        adapter.reorder_layer(layer, heads.tolist(), units.tolist())
