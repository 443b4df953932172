"""evalharness: pairwise win-rate evaluation of LoRA adapters, with honest statistics."""

__version__ = "0.1.0"
