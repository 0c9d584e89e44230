"""The sizes of an encoder that search spaces, masks and counts are defined on."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import PretrainedConfig


@dataclass(frozen=True)
class ModelDims:
    num_layers: int
    num_heads: int
    hidden_size: int
    intermediate_size: int

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> ModelDims:
        return cls(
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class LayerStructure:
    """One kept layer of a pruned model, in indices of the model it was cut from."""

    source_layer: int
    heads: tuple[int, ...]
    units: tuple[int, ...]


@dataclass(frozen=True)
class PrunedStructure:
    source_dims: ModelDims
    layers: tuple[LayerStructure, ...]

    def to_dict(self) -> dict:
        return {
            "source_dims": self.source_dims.to_dict(),
            "layers": [
                {"source_layer": layer.source_layer, "heads": list(layer.heads), "units": list(layer.units)}
                for layer in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> PrunedStructure:
        return cls(
            source_dims=ModelDims(**data["source_dims"]),
            layers=tuple(
                LayerStructure(int(d["source_layer"]), tuple(map(int, d["heads"])), tuple(map(int, d["units"])))
                for d in data["layers"]
            ),
        )
