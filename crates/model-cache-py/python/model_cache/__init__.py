"""Model Cache from Python: download and keep Hugging Face Hub models in the standard cache.

The engine is the one the Model Cache app and ``mcache`` use (chunked, parallel, resumable,
verified downloads), written in Rust; files land in the usual Hugging Face cache, so
``huggingface_hub``, ``transformers`` and ``llama.cpp`` find them, offline too.

>>> from model_cache import Cache
>>> cache = Cache()
>>> snapshot = cache.pull("org/model-GGUF", quant="Q4_K_M", progress=print)  # doctest: +SKIP
>>> cache.path("org/model-GGUF", "model-Q4_K_M.gguf")  # doctest: +SKIP

Existing ``huggingface_hub`` code switches by changing an import::

    from model_cache import hf_hub_download, snapshot_download

Errors are ``ModelCacheError`` (with ``kind``, a stable name, and ``hints``) or one of its
subclasses: ``RepoNotFound``, ``GatedRepo``, ``OfflineMiss``, ``DiskFull``, ``IntegrityError``.
"""

from ._hub import hf_hub_download, snapshot_download
from ._native import (
    Cache,
    DiskFull,
    GatedRepo,
    IntegrityError,
    ModelCacheError,
    OfflineMiss,
    RepoNotFound,
    __version__,
)

__all__ = [
    "Cache",
    "DiskFull",
    "GatedRepo",
    "IntegrityError",
    "ModelCacheError",
    "OfflineMiss",
    "RepoNotFound",
    "__version__",
    "hf_hub_download",
    "snapshot_download",
]
