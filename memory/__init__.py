"""Per-account memory: the `AccountMemory` Protocol, Chroma behind it, and the offline
embedding. Listed here are the public modules, imported on demand (Chroma is heavy)."""

__all__ = [
    "base",
    "chroma",
    "embedding",
    "in_memory",
]
