"""Stream a pool through a head, block by block, on the best device.

Yields each block's global start index with the head's logits/probabilities,
so a strategy is a per-block score + a small reduce. The block size counts
the float32 copy of the embeddings and the C-wide outputs per row.

Blocks are a multiple of ``ROW_ALIGN`` rows and start at a shard start plus
a multiple of the block size; a shorter block (a shard's tail) is padded with
zero rows up to a multiple of ``ROW_ALIGN`` before the head's matrix
products. BLAS picks its kernel by the row count (MKL: one kernel for a
single row, others for short blocks, where a row's bits also depend on its
position), but for whole multiples of ``ROW_ALIGN`` rows a row's logits are
bitwise identical at any position and any block size. So identical rows get
identical scores, and a streamed selection is the same for any
``--shard-rows`` and ``ALQ_WORKING_MEMORY``, even where scores tie (ties then
go to the smaller row, as documented).
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


def padded_rows(n: int) -> int:
    """``n`` rounded up to a multiple of ``ROW_ALIGN``: the row count every head matrix product runs at."""
    return -(-int(n) // ROW_ALIGN) * ROW_ALIGN


def pad_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` (n, d) with zero rows appended up to :func:`padded_rows` (``x`` itself when already aligned)."""
    n = x.shape[0]
    extra = padded_rows(n) - n
    if extra == 0:
        return x
    return torch.cat([x, x.new_zeros((extra, *x.shape[1:]))])


def aligned_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` (m, n) with both operands padded to multiples of ``ROW_ALIGN`` rows.

    An entry's bits then depend only on its two rows, not on m, n or the
    positions (a one-row operand, for instance, would take BLAS's matrix-vector
    kernel and round differently).
    """
    return (pad_rows(a) @ pad_rows(b).T)[:a.shape[0], :b.shape[0]]


def aligned_forward(net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(net.features(x), net(x))`` computed on :func:`pad_rows` of x: bits independent of the block."""
    n = x.shape[0]
    feats = net.features(pad_rows(x))
    return feats[:n], net.out(feats)[:n]


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
    if torch.device(device).type != "cpu":
        # copy the pool's own dtype (half the bytes of float16), convert on the device: a combined
        # dtype+device .to() converts on the host first
        return t.to(device=device).to(torch.float32)
    return t.to(dtype=torch.float32)


class Buffers:
    """Scratch tensors of one pass, allocated at the largest block and reused for every block.

    A fresh multi-megabyte tensor per block costs a page fault per 4 KiB page
    (about 12 us each on the VMs we measured, as much as the arithmetic); a
    pass that reuses its buffers pays that once.
    """

    def __init__(self, device):
        self.device = device
        self._t: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int, tail: tuple[int, ...] = (), dtype=torch.float32) -> torch.Tensor:
        t = self._t.get(name)
        if t is None or t.shape[0] < rows or tuple(t.shape[1:]) != tuple(tail) or t.dtype != dtype:
            t = self._t[name] = torch.empty((rows, *tail), dtype=dtype, device=self.device)
        return t[:rows]


def forward_into(net, arr: np.ndarray, buffers: Buffers) -> tuple[torch.Tensor, torch.Tensor]:
    """``(net.features(x), net(x))`` of a block, written into ``buffers`` (eval mode, no dropout).

    The same kernels as ``HeadNet.forward`` (addmm, elementwise normalisation),
    so the values are bitwise identical; only the memory is reused. The
    returned tensors are overwritten by the next block.
    """
    with torch.no_grad():
        return _forward_into(net, arr, buffers)


def _forward_into(net, arr: np.ndarray, buffers: Buffers) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(arr)
    m = padded_rows(n)  # every product at a multiple of ROW_ALIGN rows (see the module docstring)
    x = buffers.get("x", m, (net.dim,))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        src = torch.from_numpy(np.ascontiguousarray(arr))
    if x.device.type != "cpu":
        src = src.to(x.device, non_blocking=True)
    x[:n].copy_(src)
    x[n:].zero_()
    if net.normalize == "l2":
        x.div_(x.norm(2, 1, keepdim=True).clamp_min(1e-12))
    elif net.normalize == "standardize":
        x.sub_(net.mean).div_(net.scale)
    f = x
    if net.hidden:
        lin = net.body[0]
        f = buffers.get("h", m, (net.hidden,))
        torch.addmm(lin.bias, x, lin.weight.t(), out=f)
        f.relu_()
    z = buffers.get("z", m, (net.n_classes,))
    torch.addmm(net.out.bias, f, net.out.weight.t(), out=z)
    return f[:n], z[:n]


def iter_logits(pool: Pool, head: Head, *, split: tuple[int, int] = (1, 0), block_rows: int | None = None,
                device=None, lo: int | None = None, hi: int | None = None, buffers: Buffers | None = None
                ) -> Iterator[tuple[Block, torch.Tensor, torch.Tensor]]:
    """Yield (block, features, logits) for every block of the pool (or split, or rows [lo, hi)).

    With ``buffers`` the yielded tensors live in reused scratch memory: use
    them before asking for the next block (copy anything you keep).
    """
    device = resolve_device(device)
    head.to(device)
    net = head.net.eval()
    rows = align_rows(block_rows or head_block_rows(pool, head))
    with torch.no_grad():
        for block in pool.iter_blocks(block_rows=rows, split=split, lo=lo, hi=hi):
            if buffers is not None:
                feats, z = forward_into(net, block.vectors, buffers)
                yield block, feats, z
                continue
            feats, z = aligned_forward(net, to_tensor(block, device))
            yield block, feats, z


def probabilities(head: Head, logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if head.multilabel else torch.softmax(logits, dim=1)
