"""Where bytes live: local paths and object-storage URIs behind one small layer.

``from alq import fs`` then ``fs.read_bytes(...)``, ``fs.join(...)``: this
package gathers the names of its modules, each one idea:

- :mod:`alq.fs.uris`: naming (``s3://``, ``gs://``, ``file://``, plain paths)
  and the clients that reach a store;
- :mod:`alq.fs.ops`: plain operations on either kind of location;
- :mod:`alq.fs.conditional`: conditional writes (put-if-absent, replace-if-version);
- :mod:`alq.fs.generations`: staging small files, and directory outputs on a
  store published by one PUT of a pointer;
- :mod:`alq.fs.flock`: the advisory lock file beside a local path.

Modules inside alq's storage layers import from the real module; this
package is for everything above them.
"""

from alq.fs.conditional import create_exclusive, delete_if, read_versioned, replace_if, version_of
from alq.fs.generations import (
    POINTER,
    current_generation,
    new_generation,
    publish_dir,
    staged_input,
    staged_output,
    switch_generation,
)
from alq.fs.ops import (
    delete,
    delete_tree,
    download,
    exists,
    file_type,
    listdir,
    open_input,
    read_bytes,
    read_schema,
    read_table,
    size_of,
    upload,
    write_bytes,
)
from alq.fs.uris import (
    GCS_HINT,
    REMOTE_SCHEMES,
    S3_HINT,
    bucket_key,
    filesystem,
    is_remote,
    join,
    local,
    name_of,
    normalize,
    parent_of,
    reset_filesystems,
    scheme_of,
)

__all__ = [
    "GCS_HINT", "POINTER", "REMOTE_SCHEMES", "S3_HINT", "bucket_key", "create_exclusive", "current_generation",
    "delete", "delete_if", "delete_tree", "download", "exists", "file_type", "filesystem", "is_remote", "join",
    "listdir", "local", "name_of", "new_generation", "normalize", "open_input", "parent_of", "publish_dir",
    "read_bytes", "read_schema", "read_table", "read_versioned", "replace_if", "reset_filesystems", "scheme_of",
    "size_of", "staged_input", "staged_output", "switch_generation", "upload", "version_of", "write_bytes",
]
