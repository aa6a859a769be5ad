"""Is this derived file for this pool? Checks by recorded fingerprint, never by overlapping ids.

Generated ids (0..N-1) overlap between any two pools, so a labels file made
for another pool would resolve without a single unknown id. Labels record the
pool fingerprint they were imported against; the pool's manifest gives the
fingerprint it had before each append (:meth:`Manifest.lineage`). A labels
file is for this pool when its fingerprint is one of those: made before some
``alq embed --append`` is fine, made for a different pool is refused.
"""

from __future__ import annotations

from pathlib import Path

from alq.errors import StaleError
from alq.io import parquet_metadata


def check_labels_pool(labels: str | Path, pool, *, pool_path: str | Path | None = None) -> None:
    """Refuse a labels file whose recorded pool is not this pool (nor an earlier state of it)."""
    manifest = getattr(pool, "manifest", None)
    recorded = parquet_metadata(labels).get("pool_fingerprint")
    if manifest is None or not recorded or recorded in manifest.lineage():
        return
    where = f" {pool_path}" if pool_path else ""
    raise StaleError(f"{labels}: was made for another pool (pool fingerprint {recorded}; this pool{where} is "
                     f"{pool.fingerprint} and never was {recorded})",
                     hint="pass the pool these labels belong to, or import the annotator files against this pool "
                          "with `alq labels import FILES --pool POOL --out NEW.parquet`")
