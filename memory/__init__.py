"""Per-account memory: the `AccountMemory` Protocol, Chroma behind it, and the offline
embedding. Listed here are the public modules, imported on demand (Chroma is heavy)."""

import os

# onnxruntime (the embedding) ships telemetry to Microsoft on Linux since 1.29, on unless this
# is set before its environment is created; gtm-agents sends nothing anywhere it is not asked to.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = [
    "base",
    "batch",
    "chroma",
    "chroma_drafts",
    "chroma_http",
    "embedding",
    "hnsw_scrub",
    "in_memory",
    "vectors",
]
