"""What alq trusts in an encoder file: its graph, never a pickle.

``torch.export.load`` unpickles a ``.pt2`` archive's sample inputs, weights and
constants with ``torch.load(weights_only=False)``, so a crafted archive runs
arbitrary code on load. :func:`check_pt2_pickles` first loads every pickled
member with ``weights_only=True`` (plain tensors and containers only) and
refuses the file if any needs more; ``alq embed --trust-encoder`` skips it.
"""

from __future__ import annotations

from pathlib import Path

from alq.errors import BadInputError

_PICKLE_DIRS = ("/data/", "/constants/", "/weights/", "/sample_inputs/")


def check_pt2_pickles(path: Path) -> None:
    """Refuse a .pt2 archive with a pickled member that is not plain tensors (it would run code on load)."""
    import io
    import zipfile

    import torch

    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInputError(f"{path}: not a torch.export program (.pt2) ({exc})") from None
    with zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir() or name.endswith(".json") or not any(d in f"/{name}" for d in _PICKLE_DIRS):
                continue
            head = zf.open(name).read(2)
            if head[:1] != b"\x80" and head != b"PK":
                continue  # raw tensor bytes, not a pickle
            try:
                torch.load(io.BytesIO(zf.read(name)), map_location="cpu", weights_only=True)
            except Exception as exc:  # UnpicklingError and friends: it needs more than tensors
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
                raise BadInputError(f"{path}: archive member {name} is a pickle that is not plain tensors; alq "
                                    f"does not run pickles from encoder files ({why})",
                                    hint="re-export the encoder with torch.export.save, or pass --trust-encoder "
                                         "if you made this file yourself") from None


class _quiet_torch_logs:
    """torch.export logs a screenful when a file does not load; the Error line says it in one."""

    def __enter__(self):
        import logging

        self._was = logging.root.manager.disable
        logging.disable(logging.CRITICAL)

    def __exit__(self, *exc):
        import logging

        logging.disable(self._was)
