"""prunebench: structural pruning of fine-tuned transformer encoders with NAS, measured."""

__version__ = "0.1.0"
