"""Where dense math runs: CUDA when present, else CPU; ``ALQ_DEVICE`` overrides."""

from __future__ import annotations

import functools
import os

from alq.errors import BadInputError


@functools.cache
def torch_device(preferred: str | None = None):
    import torch

    want = preferred or os.environ.get("ALQ_DEVICE", "auto")
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"device {want!r} requested but torch sees no CUDA GPU",
                            hint="unset ALQ_DEVICE or pass --device cpu")
    try:
        return torch.device(want)
    except RuntimeError:
        raise BadInputError(f"unknown device {want!r} (use auto, cpu or cuda[:N])") from None


def faiss_gpu_count() -> int:
    """Number of GPUs faiss can use (0 with the CPU build or no GPU)."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a runtime dependency
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0
