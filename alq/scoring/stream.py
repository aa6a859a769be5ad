"""Stream a pool through a head, block by block, on the best device.

Yields each block's global start index with the head's logits/probabilities,
so a strategy is a per-block score + a small reduce. The block size counts
the float32 copy of the embeddings and the C-wide outputs per row.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from alq.device import torch_device
from alq.model.head import Head
from alq.store.pool import Block, Pool


def head_block_rows(pool: Pool, head: Head, extra_per_row: int = 0) -> int:
    c = head.n_classes
    hidden = head.net.hidden
    per_row = pool.dim * (pool.dtype.itemsize + 4) + 4 * (hidden + 4 * c) + extra_per_row
    return pool.block_rows(per_row)


def to_tensor(block: Block | np.ndarray, device) -> torch.Tensor:
    arr = block.vectors if isinstance(block, Block) else block
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.to(device=device, dtype=torch.float32, non_blocking=True)


def iter_logits(pool: Pool, head: Head, *, split: tuple[int, int] = (1, 0), block_rows: int | None = None,
                device=None, lo: int | None = None, hi: int | None = None
                ) -> Iterator[tuple[Block, torch.Tensor, torch.Tensor]]:
    """Yield (block, features, logits) for every block of the pool (or split)."""
    device = device or torch_device()
    head.to(device)
    net = head.net.eval()
    rows = block_rows or head_block_rows(pool, head)
    with torch.no_grad():
        for block in pool.iter_blocks(block_rows=rows, split=split, lo=lo, hi=hi):
            x = to_tensor(block, device)
            feats = net.features(x)
            yield block, feats, net.out(feats)


def probabilities(head: Head, logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if head.multilabel else torch.softmax(logits, dim=1)
