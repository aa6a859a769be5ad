"""Label Studio, both ways: a selection as import tasks, an export as labels.

Out: Label Studio imports a JSON list of tasks, each ``{"data": {...}}``;
the labeling config refers to data fields as ``$name`` (``<Image
value="$url"/>``). :func:`to_tasks` makes one task per selected row with the
chosen metadata columns as data fields plus ``alq_id`` (the pool id),
``alq_rank`` and ``alq_score``.

Back: Label Studio exports annotations in three shapes alq reads.

- **JSON**: the task list, each task with its ``data`` and ``annotations``
  (``[{"result": [{"from_name": "label", "type": "choices", "value":
  {"choices": [...]}}], "was_cancelled": false, ...}]``). The pool id is
  ``data.alq_id``; the latest non-cancelled annotation of a task counts.
- **JSON-MIN**: one flat record per annotation: the task's data fields, its
  Label Studio task id as ``id``, the choice under the control's name (a
  string, or ``{"choices": [...]}`` for several), and ``annotator``,
  ``annotation_id``, ``created_at``, ``updated_at``, ``lead_time``.
- **CSV**: the JSON-MIN record as a row (``{"choices": [...]}`` JSON text in
  the control's column).

In every shape ``id`` is Label Studio's own task id, never the pool's: the
pool id is ``alq_id`` (or the field ``--id-column`` names), and an export
without one is refused. The choice is read from one ``<Choices>`` control:
the only one there is, or the one ``--from-name`` names. Tasks without an
annotation are counted, not imported (still pending). Anything else that is
not what Label Studio writes (an id that is a float or a boolean, a choice
that is null, empty or nested, ``annotations`` that is not a list) is refused
with the task or record it is in.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError

ID_FIELD = "alq_id"
TASK_ID = "id"  # Label Studio's own task id in JSON-MIN and CSV exports
ANNOTATION_FIELDS = ("annotator", "annotation_id", "created_at", "updated_at", "lead_time")
_ASCII_INT = re.compile(r"-?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)


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


@dataclass
class ExportRows:
    """The annotated rows of one Label Studio export, before typing ids."""

    ids: list = field(default_factory=list)  # as exported (ints or strings)
    choices: list = field(default_factory=list)  # per row: a tuple of one or more class names
    places: list = field(default_factory=list)  # per row: its task/record number, for messages
    unit: str = "task"  # "task" (JSON), "record" (JSON-MIN) or "line" (CSV)
    not_annotated: int = 0  # tasks (records, rows) with no annotation yet
    total: int = 0  # tasks (records, rows) in the file

    @property
    def multilabel(self) -> bool:
        return any(len(c) > 1 for c in self.choices)

    def labels(self) -> list:
        """One class per row (multi-class), or tuples when any row has several choices."""
        return [tuple(c) for c in self.choices] if self.multilabel else [c[0] for c in self.choices]


def is_export_header(names) -> bool:
    """A CSV header (or JSON-MIN record) as Label Studio exports it: its task ``id`` and the annotation's fields."""
    names = set(names)
    return TASK_ID in names and "annotation_id" in names


def _kind(v) -> str:
    return type(v).__name__


def _check_choices(values, where: str) -> tuple:
    """A choices list as Label Studio writes it: one or more non-empty strings."""
    if not isinstance(values, list):
        raise BadInputError(f"{where}: `choices` is a {_kind(values)}, not a list of strings")
    if not values:
        raise BadInputError(f"{where}: an annotation with no choices (an empty `choices` list)")
    for v in values:
        if not isinstance(v, str) or not v.strip():
            raise BadInputError(f"{where}: choice {v!r} is not a non-empty string",
                                hint="fix the annotation in Label Studio and export again")
    return tuple(values)


def choice_value(v, where: str) -> tuple:
    """A JSON-MIN/CSV choice: a string (one choice) or ``{"choices": [...]}`` (several)."""
    if isinstance(v, dict):
        if set(v) - {"choices"} or "choices" not in v:
            raise BadInputError(f"{where}: {json.dumps(v)[:80]} is not a Label Studio choice "
                                "(expected a string or {\"choices\": [...]})")
        return _check_choices(v["choices"], where)
    if not isinstance(v, str) or not v.strip():
        raise BadInputError(f"{where}: choice {v!r} is not a non-empty string",
                            hint="fix the annotation in Label Studio and export again")
    return (v,)


def csv_choice(text: str, where: str) -> tuple:
    """A choice cell of a Label Studio CSV export: the class, or ``{"choices": [...]}`` JSON for several."""
    if text.startswith("{"):
        try:
            v = json.loads(text)
        except json.JSONDecodeError:
            raise BadInputError(f"{where}: {text[:80]!r} is neither a class name nor a Label Studio "
                                "{\"choices\": [...]} value") from None
        return choice_value(v, where)
    return choice_value(text, where)


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a Label Studio JSON export ({str(exc).splitlines()[0][:120]})") from None
    except RecursionError:
        raise BadInputError(f"{path}: not a Label Studio JSON export (nested too deeply)") from None


def read_export(path: str | Path, *, id_field: str | None = None, from_name: str | None = None,
                label_field: str = "label") -> ExportRows:
    """The annotated rows of a Label Studio JSON or JSON-MIN export (:class:`ExportRows`).

    ``id_field``: the data field holding the pool id (default ``alq_id``); ``from_name``: the
    ``<Choices>`` control to read (default: the only one; JSON-MIN: ``label_field``).
    """
    path = Path(path)
    tasks = _load(path)
    if not isinstance(tasks, list):
        raise BadInputError(f"{path}: a Label Studio export is a JSON list of tasks, this holds a "
                            f"{_kind(tasks)}")
    if not tasks:
        raise BadInputError(f"{path}: an empty Label Studio export (no tasks)")
    bad = next((i for i, t in enumerate(tasks) if not isinstance(t, dict)), None)
    if bad is not None:
        raise BadInputError(f"{path}: task {bad} is a {_kind(tasks[bad])}, not an object (a Label Studio export "
                            "is a list of tasks)")
    full = ["data" in t for t in tasks]
    if all(full):
        rows = _read_json(path, tasks, id_field, from_name)
    elif not any(full):
        rows = _read_json_min(path, tasks, id_field, from_name or label_field)
    else:
        i = full.index(not full[0])
        raise BadInputError(f"{path}: task {i} {'has' if full[i] else 'has no'} `data` object, unlike task 0 "
                            "(JSON tasks mixed with JSON-MIN records?)")
    if not rows.ids:
        raise BadInputError(f"{path}: none of its {rows.total} {rows.unit}s is annotated yet",
                            hint="export again once annotators have labeled some")
    return rows


def _read_json(path: Path, tasks: list, id_field: str | None, from_name: str | None) -> ExportRows:
    rows = ExportRows(unit="task", total=len(tasks))
    key = id_field or ID_FIELD
    picked: list[tuple[int, object, dict]] = []  # (task, id, {control: choices}) of each annotated task
    controls: dict[str, int] = {}
    for i, task in enumerate(tasks):
        where = f"{path}: task {i}"
        data = task["data"]
        if not isinstance(data, dict):
            raise BadInputError(f"{where}: `data` is a {_kind(data)}, not an object")
        if key not in data:
            tid = f" (Label Studio task {task[TASK_ID]})" if TASK_ID in task else ""
            if id_field:
                raise BadInputError(f"{where}{tid}: no data.{id_field} (data has {', '.join(map(str, data)) or 'nothing'})")
            raise BadInputError(f"{where}{tid} has no data.{ID_FIELD}: the pool id alq's tasks carry "
                                f"(data has {', '.join(map(str, data)) or 'nothing'})",
                                hint="import tasks made by `alq export --format label-studio`, or pass "
                                     "--id-column NAME for the data field that holds the pool id")
        anns = task.get("annotations")
        if anns is None:
            anns = []
        if not isinstance(anns, list):
            raise BadInputError(f"{where}: `annotations` is a {_kind(anns)}, not a list")
        done = []
        for j, ann in enumerate(anns):
            if not isinstance(ann, dict):
                raise BadInputError(f"{where}: annotation {j} is a {_kind(ann)}, not an object")
            if not ann.get("was_cancelled"):
                done.append((j, ann))
        if not done:
            rows.not_annotated += 1
            continue
        j, ann = done[-1]  # the latest annotation that was not cancelled
        by_control = _annotation_choices(ann, f"{where}: annotation {j}")
        for name in by_control:
            controls[name] = controls.get(name, 0) + 1
        picked.append((i, data[key], by_control))
    if from_name is None and len(controls) > 1:
        raise BadInputError(f"{path}: choices from {len(controls)} controls ({', '.join(sorted(controls))}); "
                            "which one holds the class?", hint="pass --from-name NAME")
    if from_name is not None and from_name not in controls and controls:
        raise BadInputError(f"{path}: no choices from a control named {from_name!r} "
                            f"(its controls: {', '.join(sorted(controls))})", hint="pass --from-name NAME")
    for i, tid, by_control in picked:
        if from_name is not None:
            choices = by_control.get(from_name)
        else:
            choices = next(iter(by_control.values()), None)
        if choices is None:
            rows.not_annotated += 1
            continue
        rows.ids.append(tid)
        rows.choices.append(choices)
        rows.places.append(i)
    return rows


def _annotation_choices(ann: dict, where: str) -> dict:
    """{control name: choices} of one annotation's ``result`` (non-choice results are ignored)."""
    result = ann.get("result")
    if result is None:
        return {}
    if not isinstance(result, list):
        raise BadInputError(f"{where}: `result` is a {_kind(result)}, not a list")
    out: dict[str, tuple] = {}
    for k, item in enumerate(result):
        w = f"{where}: result {k}"
        if not isinstance(item, dict):
            raise BadInputError(f"{w} is a {_kind(item)}, not an object")
        value = item.get("value")
        typ = item.get("type")
        if typ != "choices" and not (isinstance(value, dict) and "choices" in value):
            continue  # a region, a text area, a rating: not a class choice
        if not isinstance(value, dict):
            raise BadInputError(f"{w}: `value` is a {_kind(value)}, not an object")
        name = item.get("from_name", "")
        if not isinstance(name, str):
            raise BadInputError(f"{w}: `from_name` is a {_kind(name)}, not a string")
        choices = _check_choices(value.get("choices"), w.rsplit(": annotation", 1)[0])
        out[name] = out.get(name, ()) + choices
    return out


def _read_json_min(path: Path, records: list, id_field: str | None, label_field: str) -> ExportRows:
    rows = ExportRows(unit="record", total=len(records))
    key = id_field or ID_FIELD
    if not any(label_field in r for r in records):
        fields = [k for k in records[0] if k not in (TASK_ID, ID_FIELD, "alq_rank", "alq_score", *ANNOTATION_FIELDS)]
        raise BadInputError(f"{path}: a Label Studio JSON-MIN export holds each choice under its control's name, "
                            f"and no record has a {label_field!r} field (other fields: {', '.join(fields) or 'none'})",
                            hint="pass --from-name NAME, the name of the <Choices> control")
    for i, rec in enumerate(records):
        where = f"{path}: record {i}"
        if key not in rec:
            if id_field:
                raise BadInputError(f"{where}: no {id_field!r} field")
            raise BadInputError(f"{where}: no `alq_id` field (in a Label Studio export `id` is Label Studio's task "
                                "id, not the pool id)",
                                hint="import tasks made by `alq export --format label-studio`, or pass "
                                     "--id-column NAME for the field that holds the pool id")
        if label_field not in rec:
            rows.not_annotated += 1
            continue
        rows.ids.append(rec[key])
        rows.choices.append(choice_value(rec[label_field], where))
        rows.places.append(i)
    return rows


def typed_ids(ids: list, id_type: str, path, unit: str = "task", places: list | None = None) -> np.ndarray:
    """Exported ids in the pool's id type, exactly: an int pool takes JSON integers (or strings of ASCII
    digits, as Label Studio may write them); a string pool takes strings. Floats and booleans are refused."""
    places = list(range(len(ids))) if places is None else places
    if id_type == "int64":
        out = np.empty(len(ids), dtype=np.int64)
        for i, v in enumerate(ids):
            n = None
            if isinstance(v, int) and not isinstance(v, bool):
                n = v
            elif isinstance(v, str) and _ASCII_INT.fullmatch(v):
                n = int(v)
            if n is None:
                raise BadInputError(f"{path}: {unit} {places[i]}: id {v!r} is not an integer (the pool uses "
                                    "integer ids)")
            if not _INT64[0] <= n <= _INT64[1]:
                raise BadInputError(f"{path}: {unit} {places[i]}: id {v} does not fit in a 64-bit integer")
            out[i] = n
        return out
    for i, v in enumerate(ids):
        if not isinstance(v, str):
            what = "a number" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"a {_kind(v)}"
            raise BadInputError(f"{path}: {unit} {places[i]}: id {v!r} is {what}, but the pool uses string ids")
        if not v:
            raise BadInputError(f"{path}: {unit} {places[i]}: empty id")
    return np.array(ids, dtype=object)
