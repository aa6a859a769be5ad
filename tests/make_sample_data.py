"""Build sample_data/ from scikit-learn's bundled handwritten digits (no download).

The UCI "Optical Recognition of Handwritten Digits" test set as shipped with
scikit-learn (1,797 images of 8x8 pixels, 16 grey levels, 10 classes;
scikit-learn is BSD-3-Clause). Each image's 64 pixel values / 16 are its
embedding. A stratified split gives a 1,497-row pool and a 300-row test set;
``labels_round0.csv`` is a random 100-row seed set of pool labels.

Usage: python tests/make_sample_data.py sample_data   (or: make sample-data)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TEST_ROWS = 300
SEED_ROWS = 100
SEED = 0


def build(out: Path) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from alq.store.labels import LabelSet

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # (1797, 64) in [0, 1]
    y = digits.target.astype(np.int64)
    ids = np.arange(len(x), dtype=np.int64)  # the row index in sklearn's copy
    pool_idx, test_idx = train_test_split(ids, test_size=TEST_ROWS, stratify=y, random_state=SEED)
    pool_idx, test_idx = np.sort(pool_idx), np.sort(test_idx)
    out.mkdir(parents=True, exist_ok=True)
    for name, idx in (("pool", pool_idx), ("test", test_idx)):
        table = pa.table({"id": pa.array(ids[idx]),
                          "embedding": pa.array(list(x[idx]), type=pa.list_(pa.float32()))})
        table = table.replace_schema_metadata({b"source": b"scikit-learn load_digits (BSD-3-Clause); "
                                                         b"pixels / 16; tests/make_sample_data.py"})
        pq.write_table(table, out / f"{name}.parquet", compression="zstd")
        LabelSet(ids=ids[idx], labels=y[idx].tolist()).write(out / f"{name}_labels.parquet", source="sklearn digits")
    rng = np.random.default_rng(SEED)
    seed_idx = np.sort(rng.choice(pool_idx, size=SEED_ROWS, replace=False))
    with open(out / "labels_round0.csv", "w", newline="") as fh:
        fh.write("id,label\n")
        for i in seed_idx:
            fh.write(f"{i},{y[i]}\n")
    return {"pool": len(pool_idx), "test": len(test_idx), "seed": SEED_ROWS}


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "sample_data")
    print(build(target))
