"""Persistent stores of a run's artifacts."""

from .arrays import PatternStore, StoreMeta

__all__ = ["PatternStore", "StoreMeta"]
