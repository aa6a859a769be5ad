"""Stream a pool through a head, block by block, on the best device.

Yields each block's global start index with the head's logits/probabilities,
so a strategy is a per-block score + a small reduce. The block size counts
the float32 copy of the embeddings and the C-wide outputs per row.

Blocks are a multiple of ``ROW_ALIGN`` rows and start at a shard start plus
a multiple of the block size, so every row sits at the same offset modulo
``ROW_ALIGN`` whatever ``ALQ_WORKING_MEMORY`` says. CPU BLAS kernels tile
rows (by 8 on AVX2 MKL), and a row's logits are bitwise identical for any
aligned block size; that is what makes a streamed selection identical to an
in-memory one even where scores tie.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from alq.device import torch_device
from alq.model.head import Head
from alq.store.pool import Block, Pool

ROW_ALIGN = 64


def head_block_rows(pool: Pool, head: Head, extra_per_row: int = 0) -> int:
    """Rows per block for a head pass (a multiple of ``ROW_ALIGN``, at least ``ROW_ALIGN``)."""
    c = head.n_classes
    hidden = head.net.hidden
    per_row = pool.dim * (pool.dtype.itemsize + 4) + 4 * (hidden + 4 * c) + extra_per_row
    return align_rows(pool.block_rows(per_row))


def align_rows(rows: int) -> int:
    return max(ROW_ALIGN, (int(rows) // ROW_ALIGN) * ROW_ALIGN)


def resolve_device(device=None) -> torch.device:
    """A torch device for a map task: the given one when usable here, else the best local one.

    A task may run on a worker without the driver's GPU (Ray); it then uses its own device.
    """
    if device is None:
        return torch_device()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return dev


def to_tensor(block: Block | np.ndarray, device) -> torch.Tensor:
    """A float32 tensor of a block on ``device``. Read-only memory-mapped rows are
    wrapped without a copy (never written to), then converted by torch."""
    arr = np.ascontiguousarray(block.vectors if isinstance(block, Block) else block)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(arr)
    return t.to(device=device, dtype=torch.float32, non_blocking=True)


def iter_logits(pool: Pool, head: Head, *, split: tuple[int, int] = (1, 0), block_rows: int | None = None,
                device=None, lo: int | None = None, hi: int | None = None
                ) -> Iterator[tuple[Block, torch.Tensor, torch.Tensor]]:
    """Yield (block, features, logits) for every block of the pool (or split, or rows [lo, hi))."""
    device = resolve_device(device)
    head.to(device)
    net = head.net.eval()
    rows = align_rows(block_rows or head_block_rows(pool, head))
    with torch.no_grad():
        for block in pool.iter_blocks(block_rows=rows, split=split, lo=lo, hi=hi):
            x = to_tensor(block, device)
            feats = net.features(x)
            yield block, feats, net.out(feats)


def probabilities(head: Head, logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if head.multilabel else torch.softmax(logits, dim=1)
