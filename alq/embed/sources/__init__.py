"""Input readers for ``alq embed``: each streams (vectors, ids) in bounded blocks.

Formats: ``.npy`` (2-D vectors, or raw encoder inputs of any shape),
``.npz`` (a vector array + an optional id array), Parquet (a vector column
of fixed-size or variable lists of floats + an optional id column), and an
existing pool directory. Every reader knows its row count before reading,
so progress has a total and an ids file can be checked up front; none
holds more than one block (or one Parquet row group) in memory.

One module per input format (``npy``, ``npz``, ``parquet``, ``pool``), the
contract they share (``base``), ids files and id checks (``ids``), and
which files are inputs and which reader each gets (``inputs``).

Inputs may be ``s3://`` / ``gs://`` URIs, read in place: .npy and stored
.npz arrays by header + positioned range reads (:mod:`alq.embed.ranged`),
deflated .npz members streamed through the zip, Parquet through pyarrow's
random-access file (footer, then the column chunks it needs). Every reader
can also start at any row (``batches(block, start, stop)``), which is what a
Ray task encoding one slice of the inputs needs.
"""

from alq.embed.sources.base import Batch, Source
from alq.embed.sources.ids import IdStream, check_id_text
from alq.embed.sources.inputs import expand_inputs, open_source

__all__ = ["Batch", "IdStream", "Source", "check_id_text", "expand_inputs", "open_source"]
