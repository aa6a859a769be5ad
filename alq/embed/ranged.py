"""Arrays stored (uncompressed, ``np.savez``'s default) inside an .npz: where their bytes begin.

A Ray task encodes rows [lo, hi) of an input without reading what comes
before; on ``s3://`` / ``gs://`` that means range GETs of exactly those
bytes (:meth:`alq.store.npyfile.ArrayAt.blocks`), never a download of the
whole object. An npz member's NPY bytes sit at a fixed offset of the zip,
after its local header.
"""

from __future__ import annotations

import struct

from alq.errors import BadInputError
from alq.store.npyfile import read_bytes_at

_ZIP_LOCAL = struct.Struct("<4s5H3L2H")  # a zip local file header (30 bytes)


def stored_member_offset(fh, header_offset: int, *, source: str) -> int:
    """Where the bytes of an uncompressed zip member begin (after its local header)."""
    raw = read_bytes_at(fh, header_offset, _ZIP_LOCAL.size, source=source)
    fields = _ZIP_LOCAL.unpack(raw)
    if fields[0] != b"PK\x03\x04":
        raise BadInputError(f"{source}: not a readable .npz file (bad zip member header)")
    return header_offset + _ZIP_LOCAL.size + fields[-2] + fields[-1]
