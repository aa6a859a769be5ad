"""Label Studio, both ways: a selection as import tasks, an export as labels.

Out: Label Studio imports a JSON list of tasks, each ``{"data": {...}}``;
the labeling config refers to data fields as ``$name`` (``<Image
value="$url"/>``). :func:`to_tasks` makes one task per selected row with the
chosen metadata columns as data fields plus ``alq_id`` (the pool id),
``alq_rank`` and ``alq_score``.

Back: a Label Studio JSON export is the same list, each task with
``annotations`` (``[{"result": [{"type": "choices", "value": {"choices":
[...]}}], "was_cancelled": false, ...}]``). :func:`read_export` takes the
latest non-cancelled annotation of each task that has one: one choice is a
multi-class label, several a multi-label row. Tasks without an annotation
are skipped (still pending).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError

ID_FIELD = "alq_id"


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def to_tasks(table: pa.Table, data_columns: list[str]) -> list[dict]:
    """One Label Studio task per row of a selection table (``id``, ``rank``, ``score`` + ``data_columns``)."""
    cols = {c: table.column(c).to_pylist() for c in data_columns}
    ids, ranks, scores = (table.column(c).to_pylist() for c in ("id", "rank", "score"))
    out = []
    for i in range(table.num_rows):
        data = {c: _plain(cols[c][i]) for c in data_columns}
        data.update({ID_FIELD: ids[i], "alq_rank": ranks[i], "alq_score": _plain(scores[i])})
        out.append({"data": data})
    return out


def _choices(annotation: dict) -> list[str]:
    out: list[str] = []
    for item in annotation.get("result") or []:
        value = item.get("value") or {}
        if isinstance(value.get("choices"), list):
            out += [str(c) for c in value["choices"]]
    return out


def read_export(path: str | Path) -> tuple[list, list, bool, int]:
    """(ids, labels, multilabel, skipped tasks) from a Label Studio JSON export.

    ids are as exported (ints or strings); labels are strings, or tuples of strings when any
    task has several choices.
    """
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a Label Studio JSON export ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(tasks, list):
        raise BadInputError(f"{path}: a Label Studio export is a JSON list of tasks, this holds a "
                            f"{type(tasks).__name__}")
    ids, labels, skipped = [], [], 0
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise BadInputError(f"{path}: task {i} has no `data` object")
        data = task["data"]
        tid = data.get(ID_FIELD, data.get("id"))
        if tid is None:
            raise BadInputError(f"{path}: task {i} has no data.{ID_FIELD} (nor data.id)",
                                hint="import the tasks written by `alq export --format label-studio`")
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        choices = _choices(done[-1]) if done else []
        if not choices:
            skipped += 1
            continue
        ids.append(tid)
        labels.append(choices)
    multilabel = any(len(c) > 1 for c in labels)
    labels = [tuple(c) for c in labels] if multilabel else [c[0] for c in labels]
    return ids, labels, multilabel, skipped


def typed_ids(ids: list, id_type: str, path) -> np.ndarray:
    """Exported ids in the pool's id type (Label Studio may have turned ints into strings)."""
    if id_type == "int64":
        try:
            return np.array([int(v) for v in ids], dtype=np.int64)
        except (TypeError, ValueError):
            raise BadInputError(f"{path}: ids are not integers but the pool uses integer ids") from None
    return np.array([str(v) for v in ids], dtype=object)
