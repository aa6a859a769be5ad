"""Where dense math runs: CUDA when present, else CPU; ``ALQ_DEVICE`` overrides.

``ALQ_DEVICE=cpu`` keeps torch *and* faiss on the CPU (even with faiss-gpu
installed and a GPU visible); ``cuda``/``cuda:N`` requires a GPU; ``auto``
(the default) uses one when torch sees it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

from alq.errors import BadInputError


def torch_device(preferred: str | None = None):
    """The torch device: ``preferred``, else ``ALQ_DEVICE``, else auto (CUDA when torch sees a GPU)."""
    if preferred:
        return _torch_device(preferred, "device")
    return _torch_device(os.environ.get("ALQ_DEVICE", "auto").strip() or "auto", "ALQ_DEVICE")


@functools.cache
def _torch_device(want: str, source: str):
    import re

    import torch

    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", want):  # torch also knows mps, xla, meta...: alq runs on none of them
        raise BadInputError(f"{source}={want!r} is not a device alq uses (use auto, cpu or cuda[:N])",
                            hint="unset ALQ_DEVICE or set ALQ_DEVICE=cpu" if source == "ALQ_DEVICE" else None)
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"{source}={want!r} requested but torch sees no CUDA GPU",
                            hint="unset ALQ_DEVICE or set ALQ_DEVICE=cpu")
    return torch.device(want)


def faiss_gpu_count() -> int:
    """Number of GPUs faiss can use (0 with the CPU build, no GPU, or ``ALQ_DEVICE=cpu``)."""
    if os.environ.get("ALQ_DEVICE", "auto").strip().lower() == "cpu":
        return 0
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a runtime dependency
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


_GPU_RESOURCES: list = []


def faiss_to_gpu(index):
    """``index`` on every GPU faiss sees (one shared ``StandardGpuResources`` per GPU), or itself.

    faiss's ``index_cpu_to_all_gpus`` makes new resources (streams, cuBLAS
    handles, a temporary-memory pool) on every call; a map over blocks that
    moves an index per block paid that each time. The resources are made
    once per process and reused.
    """
    ngpu = faiss_gpu_count()
    if ngpu == 0:
        return index
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):  # pragma: no cover - CPU build
        return index
    while len(_GPU_RESOURCES) < ngpu:
        _GPU_RESOURCES.append(faiss.StandardGpuResources())
    if ngpu == 1:
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)
    return faiss.index_cpu_to_gpu_multiple_py(_GPU_RESOURCES[:ngpu], index)


def faiss_set_nprobe(index, nprobe: int) -> None:
    """Set ``nprobe`` on a CPU IVF index, a GPU one, or a multi-GPU replica/shard wrapper."""
    import faiss

    try:
        faiss.extract_index_ivf(index).nprobe = int(nprobe)
        return
    except (RuntimeError, AttributeError):
        pass
    space = getattr(faiss, "GpuParameterSpace", None)
    if space is not None:
        try:
            space().set_index_parameter(index, "nprobe", int(nprobe))
            return
        except (RuntimeError, AttributeError):
            pass
    index.nprobe = int(nprobe)


@contextlib.contextmanager
def serial(device, enable: bool = True) -> Iterator[None]:
    """Run the enclosed torch work on one CPU thread (the caller's thread count is restored).

    For work that is memory-light or small (per-row bookkeeping over N in the
    diversity strategies, head fits on a few thousand labels): on a busy machine
    torch's thread pool waits for descheduled threads and makes it 10-100x
    slower. No effect on a GPU or with ``enable=False``.
    """
    import torch

    if not enable or torch.device(device).type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
