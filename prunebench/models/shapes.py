"""Named model shapes (``shape:NAME``): randomly initialised models with no download.

Latency and memory do not depend on trained weights, so these are valid
profiling subjects; the tiny ones make unit tests fast.
"""

from __future__ import annotations

from transformers import BertConfig, PretrainedConfig, RobertaConfig

from prunebench.errors import UnknownNameError

_ROBERTA_BASE = dict(
    vocab_size=50265,
    max_position_embeddings=514,
    type_vocab_size=1,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    layer_norm_eps=1e-5,
)

# Sizes from the published configs: bert-base-uncased, bert-large-uncased,
# roberta-base, nreimers/MiniLM-L6-H384-uncased, google/bert_uncased_L-2_H-128 (tiny, smaller here).
SHAPES: dict[str, tuple[type[PretrainedConfig], dict]] = {
    "bert-base": (
        BertConfig,
        dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    ),
    "bert-large": (
        BertConfig,
        dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096),
    ),
    "roberta-base": (
        RobertaConfig,
        dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072, **_ROBERTA_BASE),
    ),
    "minilm": (BertConfig, dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536)),
    "bert-tiny": (BertConfig, dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256)),
    "roberta-tiny": (
        RobertaConfig,
        dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256, **_ROBERTA_BASE),
    ),
}


def shape_config(name: str) -> PretrainedConfig:
    try:
        config_class, sizes = SHAPES[name]
    except KeyError:
        raise UnknownNameError("model shape", f"shape:{name}", [f"shape:{s}" for s in SHAPES]) from None
    return config_class(**sizes)
