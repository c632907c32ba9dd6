"""Persistent stores of a run's artifacts."""

from .arrays import ArrayStore, StoreMeta

__all__ = ["ArrayStore", "StoreMeta"]
