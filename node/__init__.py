"""Datanet Node: Datanets on an EVM chain, fine-tuning jobs, a model registry and rewards."""

__version__ = "0.1.0"
