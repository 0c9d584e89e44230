"""The PyTorch half of an export: a folder ``transformers`` loads without prunebench.

``write_pytorch(loaded, folder)`` writes ``config.json`` (a ``PrunedEncoderConfig`` that says per layer
how many heads and FFN units are kept, the pooling and the kept vocabulary rows, with ``auto_map``
pointing at the modeling file), ``model.safetensors`` (the weights under that file's names) and
``modeling_pruned.py`` itself, copied from this package. Loading it is
``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from prunebench.deploy import modeling_pruned
from prunebench.errors import PrunebenchError
from prunebench.models import LoadedModel
from prunebench.models.pooling import CONFIG_KEY as POOLING_KEY
from prunebench.rundir import EXPORT_MODELING_FILE

MODELING_FILE = EXPORT_MODELING_FILE
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_FAMILIES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta"}
_EXPORTABLE_KINDS = ("classification", "regression")


def refusal(loaded: LoadedModel) -> str | None:
    """Why the exporter cannot write ``loaded`` (None: it can)."""
    if loaded.task_kind not in _EXPORTABLE_KINDS:
        return (
            f"{loaded.source} has a {loaded.task_kind} head; prunebench export writes sequence classification and "
            "regression models only"
        )
    if loaded.model.config.model_type not in _FAMILIES:
        return f"{loaded.source} is a {loaded.model.config.model_type!r} model; export knows BERT and RoBERTa layouts"
    return None


def layer_sizes(loaded: LoadedModel) -> tuple[list[int], list[int]]:
    """Heads and FFN units each kept layer has, in order."""
    if loaded.structure is not None:
        layers = loaded.structure.layers
        return [len(layer.heads) for layer in layers], [len(layer.units) for layer in layers]
    dims = loaded.dims
    return [dims.num_heads] * dims.num_layers, [dims.intermediate_size] * dims.num_layers


def pytorch_config(loaded: LoadedModel) -> dict:
    """``config.json`` of the export: what the model is, truthfully, in ``PrunedEncoderConfig``'s fields."""
    source = loaded.model.config
    heads, units = layer_sizes(loaded)
    family = _FAMILIES[source.model_type]
    num_labels = source.num_labels
    return {
        "model_type": modeling_pruned.PrunedEncoderConfig.model_type,
        "architectures": ["PrunedEncoderForSequenceClassification"],
        "auto_map": {
            "AutoConfig": "modeling_pruned.PrunedEncoderConfig",
            "AutoModelForSequenceClassification": "modeling_pruned.PrunedEncoderForSequenceClassification",
        },
        "family": family,
        "vocab_size": source.vocab_size,
        "hidden_size": source.hidden_size,
        "attention_head_size": loaded.dims.head_size,
        "num_hidden_layers": len(heads),
        "layer_heads": heads,
        "layer_units": units,
        "hidden_act": source.hidden_act,
        "max_position_embeddings": source.max_position_embeddings,
        "type_vocab_size": source.type_vocab_size,
        "layer_norm_eps": source.layer_norm_eps,
        "pad_token_id": source.pad_token_id,
        "pooling": getattr(source, POOLING_KEY, None) or "cls",
        "vocab_rows": loaded.vocab.kept if loaded.vocab is not None else None,
        "initializer_range": source.initializer_range,
        "num_labels": num_labels,
        "id2label": {str(i): label for i, label in source.id2label.items()} if num_labels > 1 else {"0": "score"},
        "problem_type": source.problem_type,
        "dtype": "float32",
    }


def pytorch_state(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    """The weights under the modeling file's names: the family's encoder is ``body``, its task head ``head``."""
    prefix = loaded.model.base_model_prefix + "."
    state = {}
    for name, tensor in loaded.model.state_dict().items():
        if name.startswith(prefix):
            renamed = "body." + name.removeprefix(prefix)
        elif name.startswith("classifier."):
            renamed = "head." + name.removeprefix("classifier.")
        else:
            raise PrunebenchError(f"{loaded.source}: weight {name!r} has no place in the exported model")
        if renamed.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
            continue  # index buffers the modeling file computes instead
        state[renamed] = tensor.detach().to("cpu").contiguous()
    return state


def write_pytorch(loaded: LoadedModel, folder: Path) -> list[str]:
    """Write config, weights and modeling file into ``folder``; returns the file names."""
    folder = Path(folder)
    (folder / CONFIG_FILE).write_text(json.dumps(pytorch_config(loaded), indent=2) + "\n")
    save_file(pytorch_state(loaded), folder / WEIGHTS_FILE, metadata={"format": "pt"})
    shutil.copyfile(modeling_pruned.__file__, folder / MODELING_FILE)
    return [CONFIG_FILE, WEIGHTS_FILE, MODELING_FILE]
