"""Everything a simulation reads, opened and checked once: the :class:`Oracle`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alq.errors import BadInputError, MissingFeatureError
from alq.io import sha256_file
from alq.simulate.config import SimulationConfig
from alq.simulate.oracle import RowLabels, row_labels, union_classes
from alq.store import Pool, open_pool
from alq.store.labels import read_labels


@dataclass
class Oracle:
    """Everything a simulation reads, loaded once: pool, true labels, test set."""

    pool: Pool
    truth: RowLabels
    test_x: np.ndarray  # float32 (n_test, d)
    test_y: np.ndarray  # (n_test,) class indices or (n_test, C) multi-hot
    classes: list
    multilabel: bool
    fingerprints: dict
    clusters: np.ndarray | None = None
    standardizer: tuple | None = None  # the pool's (mean, scale) for normalize="standardize", computed once
    allowed: np.ndarray | None = None  # bool (N,): rows --where lets be labeled (None: all)


def load_oracle(cfg: SimulationConfig, *, need_clusters: bool = False) -> Oracle:
    """Open and check every input; the pool's standardisation statistics are computed here, once."""
    pool = open_pool(cfg.pool)
    test_pool = open_pool(cfg.test_pool)
    if test_pool.dim != pool.dim:
        raise BadInputError(f"{cfg.test_pool}: test pool has dim {test_pool.dim}, the pool has dim {pool.dim}")
    lab = read_labels(cfg.labels)
    test_lab = read_labels(cfg.test_labels)
    if lab.multilabel != test_lab.multilabel:
        raise BadInputError(f"{cfg.test_labels}: test labels are {'multi' if test_lab.multilabel else 'single'}-label "
                            f"but {cfg.labels} is {'multi' if lab.multilabel else 'single'}-label")
    classes = union_classes(lab, test_lab)
    if len(classes) < 2:
        raise BadInputError(f"{cfg.labels}: a simulation needs at least 2 classes (found {classes})")
    truth, _ = row_labels(pool, lab, classes, source=str(cfg.labels), require_all=True)
    test_truth, test_rows = row_labels(test_pool, test_lab, classes, source=str(cfg.test_labels), require_all=False)
    if len(test_rows) == 0:
        raise BadInputError(f"{cfg.test_labels}: no labeled test rows")
    test_x = test_pool.take(test_rows, dtype=np.float32)
    test_y = test_truth.targets(np.arange(len(test_rows)))
    clusters = None
    if need_clusters:
        if cfg.clusters is None:
            raise BadInputError("a chosen strategy needs --clusters (from `alq cluster` on the pool)")
        try:
            from alq.cluster.store import load_clusters
        except ImportError:
            raise MissingFeatureError("this install has no `alq cluster` support (alq.cluster.store)") from None
        clusters = load_clusters(cfg.clusters, pool)
    fingerprints = {"pool": pool.fingerprint, "labels": sha256_file(cfg.labels)[:16],
                    "test_pool": test_pool.fingerprint, "test_labels": sha256_file(cfg.test_labels)[:16]}
    standardizer = None
    if cfg.train.normalize == "standardize":
        from alq.model.standardize import pool_column_stats

        standardizer = pool_column_stats(pool).standardizer()
    allowed = None
    if cfg.where is not None:  # --where: evaluated once (the pool does not change during a run)
        from alq.filters import where_mask

        allowed = where_mask(pool, cfg.where)
    if cfg.balance_by is not None:
        from alq.filters import balance_column

        balance_column(pool, cfg.balance_by)
    return Oracle(pool=pool, truth=truth, test_x=test_x, test_y=test_y, classes=classes,
                  multilabel=lab.multilabel, fingerprints=fingerprints, clusters=clusters,
                  standardizer=standardizer, allowed=allowed)
