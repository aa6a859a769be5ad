"""Apply a saved encoder to raw inputs in batches (CUDA when present).

The encoder maps a batch of raw inputs (shape (b, ...), float32 for float
inputs, int64 for integer ones such as token ids) to embeddings of shape
(b, d). Two formats: TorchScript (``torch.jit.save``, any suffix but
``.pt2``) and ``torch.export`` programs (``torch.export.save`` to ``.pt2``).

What alq trusts: an encoder's own graph runs on the inputs (that is what an
encoder is; TorchScript ``print`` calls included), so encoders must come from
someone you trust. What alq refuses: pickles. ``torch.export.load`` unpickles
the archive's sample inputs, weights and constants with
``torch.load(weights_only=False)``; alq first loads every such member with
``weights_only=True`` (plain tensors and containers only) and refuses the file
if any member needs more, unless the user passes ``--trust-encoder``. An exported
program traced with a fixed batch size gets its last, shorter batch padded
to ``batch_size`` (and the padding rows dropped).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import numpy as np

from alq.embed.trust import _quiet_torch_logs, check_pt2_pickles
from alq.errors import BadInputError
from alq.io import sha256_file


class Encoder:
    def __init__(self, path: str | Path, *, batch_size: int = 256, device=None, trust: bool = False):
        import torch

        from alq.device import torch_device

        self.path = Path(path)
        if not self.path.exists():
            raise BadInputError(f"{self.path}: encoder file not found")
        if batch_size < 1:
            raise BadInputError(f"--batch-size={batch_size} must be >= 1")
        self.batch_size = batch_size
        self.device = device or torch_device()
        self.exported = self.path.suffix == ".pt2"
        if self.exported and not trust:
            check_pt2_pickles(self.path)
        try:
            with warnings.catch_warnings(), _quiet_torch_logs():  # torch >= 2.9 marks TorchScript deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                if self.exported:
                    self.module = torch.export.load(str(self.path)).module().to(self.device)
                else:
                    self.module = torch.jit.load(str(self.path), map_location=self.device)
                    self.module.eval()
        except Exception as exc:  # torch raises RuntimeError/ValueError/... for foreign files
            msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            what = "torch.export program (.pt2)" if self.exported else "TorchScript module"
            raise BadInputError(f"{self.path}: not a {what} ({msg})",
                                hint="save the encoder with torch.jit.save(torch.jit.script(model), path) or "
                                     "torch.export.save(torch.export.export(model, example), 'encoder.pt2')") from None
        self.sha256 = sha256_file(self.path)

    def encode(self, raw: np.ndarray, *, source: str, row0: int) -> np.ndarray:
        """Embeddings of ``raw`` (shape (n, ...)) -> float32 array of shape (n, d)."""
        import torch

        if raw.dtype.kind == "f":
            to = torch.float32
        elif raw.dtype.kind in "iu":
            to = torch.int64
        elif raw.dtype.kind == "b":
            to = torch.bool
        else:
            raise BadInputError(f"{source}: raw inputs have dtype {raw.dtype}")
        outs = []
        with torch.inference_mode():
            for a in range(0, len(raw), self.batch_size):
                chunk = np.ascontiguousarray(raw[a:a + self.batch_size])
                if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
                    r = int(np.flatnonzero(~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1))[0])
                    raise BadInputError(f"{source}: row {row0 + a + r} has NaN or Inf")
                x = torch.from_numpy(chunk).to(device=self.device, dtype=to, non_blocking=True)
                pad = self.batch_size - len(chunk) if self.exported else 0
                if pad > 0:
                    x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
                try:
                    with contextlib.redirect_stdout(sys.stderr):  # an encoder's print never mixes into --json
                        y = self.module(x)
                except Exception as exc:
                    msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
                    hint = ("an exported encoder runs only the batch size it was traced with: pass that as "
                            "--batch-size, or export with dynamic_shapes") if self.exported else None
                    raise BadInputError(f"{self.path}: encoder failed on {source} rows {row0 + a}.."
                                        f"{row0 + a + len(chunk) - 1} ({msg})", hint=hint) from None
                if pad > 0 and isinstance(y, torch.Tensor):
                    y = y[: len(chunk)]
                if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[0] != len(chunk):
                    shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                    raise BadInputError(f"{self.path}: encoder returned {shape} for a batch of {len(chunk)} "
                                        f"inputs from {source}; expected (batch, dim)")
                y = y.detach().to("cpu", torch.float32).numpy()
                if not np.isfinite(y).all():
                    r = int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])
                    raise BadInputError(f"{self.path}: the encoder produced NaN or Inf for {source} row {row0 + a + r}"
                                        " (the input rows are finite)", hint="check the encoder and its inputs' "
                                        "scale and dtype")
                outs.append(y)
        return np.concatenate(outs) if len(outs) > 1 else outs[0]
