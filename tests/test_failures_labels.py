"""The labels round trip under hostile input (issue 20): a table of cases, as in tests/test_failures.py.

Each case is (setup, command, expected exit code, a regex for the single stderr line). Every case also
checks that every file that existed before the command is byte-for-byte unchanged (sha256) unless it is
the command's --out and the command succeeded, and that a failing case left no new visible file.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """pool/ (ids 0..99), spool/ (ids img000..img039), labels.parquet (ids 0..9: cat/dog)."""
    from alq.cli import run
    from alq.store import PoolWriter

    d = tmp_path_factory.mktemp("base")
    w = PoolWriter(d / "pool", shard_rows=64, dtype="float32")
    w.add(np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32))
    w.close()
    w = PoolWriter(d / "spool", shard_rows=64, dtype="float32")
    w.add(np.random.default_rng(1).normal(size=(40, 4)).astype(np.float32), [f"img{i:03d}" for i in range(40)])
    w.close()
    (d / "seed.csv").write_text("id,label\n" + "".join(f"{i},{'cat' if i % 2 else 'dog'}\n" for i in range(10)))
    assert run(["labels", "import", str(d / "seed.csv"), "--pool", str(d / "pool"), "--out",
                str(d / "labels.parquet"), "-q"]) == 0
    return d


def _hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and not p.is_symlink()}


def _visible(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(d).parts)}


def _write(name: str, data: str | list | dict) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / name).write_text(data if isinstance(data, str) else json.dumps(data))
    return setup


def _all(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        for s in setups:
            s(d)
    return setup


# -- Label Studio exports of tasks alq made (alq_id in the data), as Label Studio writes them ---------------
def _task(n: int, alq_id, *, choices=None, from_name="label", annotations=None, data=None) -> dict:
    task = {"id": 5000 + n, "data": data if data is not None else {"alq_id": alq_id, "url": f"u{alq_id}.jpg"},
            "annotations": [], "project": 1}
    if annotations is not None:
        task["annotations"] = annotations
    elif choices is not None:
        task["annotations"] = [{"id": 100 + n, "was_cancelled": False, "result": [
            {"from_name": from_name, "to_name": "image", "type": "choices", "value": {"choices": choices}}]}]
    return task


def _ann(result) -> list:
    return [{"id": 1, "was_cancelled": False, "result": result}]


def _choice(value, from_name="label") -> dict:
    return {"from_name": from_name, "to_name": "image", "type": "choices", "value": value}


def _min_record(n: int, alq_id, label, from_name="choice") -> dict:
    """One JSON-MIN record: the task's data flattened, its LS task id as `id`, the choice under the control's name."""
    rec = {"alq_id": alq_id, "url": f"u{alq_id}.jpg", "id": n, "annotator": 1, "annotation_id": 100 + n,
           "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z", "lead_time": 2.0}
    if label is not None:
        rec[from_name] = label
    return rec


def _ls_csv(rows: list[tuple], *, with_alq_id=True) -> str:
    """A Label Studio CSV export: data columns, `id` (the LS task id), the control's column, annotation columns."""
    head = (["alq_id"] if with_alq_id else []) + ["url", "id", "choice", "annotator", "annotation_id", "created_at",
                                                  "updated_at", "lead_time"]
    lines = [",".join(head)]
    for task_id, alq_id, label in rows:
        vals = ([str(alq_id)] if with_alq_id else []) + [f"u{alq_id}.jpg", str(task_id), label, "1", "7",
                                                         "2026-12-01", "2026-12-01", "2.0"]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"




def _imp(name: str, *extra: str, pool: str = "pool", out: str = "labels.parquet") -> list[str]:
    return ["labels", "import", "{d}/" + name, "--pool", "{d}/" + pool, "--out", "{d}/" + out, *extra]


def _labels_are(expect: dict, out: str = "labels.parquet") -> Callable[[Path, str], None]:
    def check(d: Path, stdout: str) -> None:
        from alq.store.labels import read_labels

        lab = read_labels(d / out)
        got = dict(zip(lab.ids.tolist(), lab.labels))
        assert {k: got.get(k) for k in expect} == expect, got
    return check


def _json_has(**kv) -> Callable[[Path, str], None]:
    def check(d: Path, stdout: str) -> None:
        s = json.loads(stdout)
        for k, v in kv.items():
            assert s[k] == v, (k, s[k], v)
    return check


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    stderr: str = ""  # regex: the single stderr line (failure) or somewhere in stderr (success)
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, str], None] | None = None


TASK_IDS_ARE_POOL_IDS = [(n, 40 + n, "cat" if n % 3 else "dog") for n in range(1, 11)]  # LS task 1 holds pool id 41

CASES = [
    # -- item 1: an LS export's `id` is Label Studio's task id ----------------------------------------
    Case("ls-csv-prefers-alq-id", _imp("ls.csv", "--label-column", "choice", "--json"), 0, "",
         _write("ls.csv", _ls_csv(TASK_IDS_ARE_POOL_IDS)),
         _labels_are({41: "cat", 43: "dog", 50: "cat", 1: "cat", 2: "dog"})),
    Case("ls-csv-without-alq-id", _imp("ls.csv", "--label-column", "choice"), 2,
         r"ls\.csv: a Label Studio export.*`id` column is Label Studio's task id.*no `alq_id`.*--id-column",
         _write("ls.csv", _ls_csv(TASK_IDS_ARE_POOL_IDS, with_alq_id=False))),
    Case("ls-csv-without-alq-id-named", _imp("ls.csv", "--label-column", "choice", "--id-column", "id",
                                                      out="n.parquet"), 0, "",
         _write("ls.csv", _ls_csv(TASK_IDS_ARE_POOL_IDS, with_alq_id=False)),
         _labels_are({1: "cat", 3: "dog"}, out="n.parquet")),
    Case("ls-json-min", _imp("ls.json", "--from-name", "choice", "--json"), 0, "",
         _write("ls.json", [_min_record(n, a, lab) for n, a, lab in TASK_IDS_ARE_POOL_IDS]),
         _labels_are({41: "cat", 43: "dog", 1: "cat"})),
    Case("ls-json-min-label-column", _imp("ls.json", "--label-column", "choice", "-q"), 0, "",
         _write("ls.json", [_min_record(n, a, lab) for n, a, lab in TASK_IDS_ARE_POOL_IDS]),
         _labels_are({41: "cat", 43: "dog"})),
    Case("ls-json-min-multi-choice", _imp("ls.json", "--from-name", "choice", "--out", "{d}/m.parquet"), 0, "",
         _write("ls.json", [_min_record(1, 41, {"choices": ["cat", "dog"]}), _min_record(2, 42, "dog")]),
         _labels_are({41: ("cat", "dog"), 42: ("dog",)}, out="m.parquet")),
    Case("ls-json-min-no-from-name", _imp("ls.json"), 2,
         r"ls\.json: a Label Studio JSON-MIN export.*no record has a 'label' field.*--from-name",
         _write("ls.json", [_min_record(n, a, lab) for n, a, lab in TASK_IDS_ARE_POOL_IDS])),
    Case("ls-json-min-without-alq-id", _imp("ls.json", "--from-name", "choice"), 2,
         r"ls\.json: record 0: .*no `alq_id`.*`id` is Label Studio's task id.*--id-column",
         _write("ls.json", [{k: v for k, v in _min_record(n, a, lab).items() if k != "alq_id"}
                            for n, a, lab in TASK_IDS_ARE_POOL_IDS])),
    Case("ls-json-without-alq-id", _imp("ls.json"), 2, r"ls\.json: task 0.*no data\.alq_id.*--id-column",
         _write("ls.json", [_task(0, None, choices=["cat"], data={"id": 3, "url": "x"})])),
    Case("ls-json-data-id-named", _imp("ls.json", "--id-column", "key"), 0, "",
         _write("ls.json", [_task(0, None, choices=["cat"], data={"key": 33, "url": "x"})]), _labels_are({33: "cat"})),
    # -- item 2: two <Choices> controls --------------------------------------------------------------
    Case("ls-two-controls", _imp("ls.json"), 2,
         r"ls\.json: choices from 2 controls \(class, quality\).*--from-name",
         _write("ls.json", [_task(0, 20, annotations=_ann([_choice({"choices": ["cat"]}, "class"),
                                                           _choice({"choices": ["blurry"]}, "quality")]))])),
    Case("ls-two-controls-from-name", _imp("ls.json", "--from-name", "class"), 0, "",
         _write("ls.json", [_task(0, 20, annotations=_ann([_choice({"choices": ["cat"]}, "class"),
                                                           _choice({"choices": ["blurry"]}, "quality")])),
                            _task(1, 21, annotations=_ann([_choice({"choices": ["ok"]}, "quality"),
                                                           _choice({"choices": ["dog"]}, "class")]))]),
         _labels_are({20: "cat", 21: "dog"})),
    Case("ls-from-name-unknown", _imp("ls.json", "--from-name", "klass"), 2,
         r"ls\.json: no choices from a control named 'klass' \(its controls: class\)",
         _write("ls.json", [_task(0, 20, choices=["cat"], from_name="class")])),
    # -- item 3: typo classes -----------------------------------------------------------------------
    Case("new-class-warns", _imp("a.csv", "--json"), 0,
         r"warning: .*a\.csv: line 3: new class 'dgo'.*not in .*labels\.parquet",
         _write("a.csv", "id,label\n20,cat\n21,dgo\n22,Dog\n"), _json_has(new_classes=["Dog", "dgo"])),
    Case("new-class-warns-even-quiet", _imp("a.csv", "-q"), 0, r"warning: .*new class 'dgo'",
         _write("a.csv", "id,label\n20,cat\n21,dgo\n")),
    Case("classes-allowlist", _imp("a.csv", "--classes", "cat,dog"), 2,
         r"a\.csv: line 3: label 'dgo' is not one of --classes \(cat, dog\)",
         _write("a.csv", "id,label\n20,cat\n21,dgo\n")),
    Case("classes-allowlist-ok", _imp("a.csv", "--classes", "cat,dog,emu"), 0, "",
         _write("a.csv", "id,label\n20,cat\n21,emu\n"), _labels_are({20: "cat", 21: "emu"})),
    # -- item 11: the pool's id column name --------------------------------------------------------------
    # (the embed side of it is in tests/test_labels.py: test_pool_remembers_its_id_column)
    # -- item 12: unannotated tasks are counted ------------------------------------------------------------
    Case("ls-json-not-annotated-counted", _imp("ls.json", "--json"), 0, "",
         _write("ls.json", [_task(0, 20, choices=["cat"]), _task(1, 21), _task(2, 22),
                            _task(3, 23, annotations=[{"id": 9, "was_cancelled": True, "result": []}])]),
         _json_has(not_annotated=3, added=1)),
    Case("ls-json-not-annotated-said", _imp("ls.json"), 0, "",
         _write("ls.json", [_task(0, 20, choices=["cat"]), _task(1, 21), _task(2, 22)]),
         lambda d, out: re.search(r"2 tasks not annotated yet", out) or pytest.fail(out)),
    Case("ls-csv-not-annotated-counted", _imp("ls.csv", "--label-column", "choice", "--json"), 0, "",
         _write("ls.csv", _ls_csv([(1, 41, "cat"), (2, 42, ""), (3, 43, "dog")])),
         _json_has(not_annotated=1, added=2)),
    Case("ls-json-nothing-annotated", _imp("ls.json"), 2, r"ls\.json: none of its 2 tasks is annotated yet",
         _write("ls.json", [_task(0, 20), _task(1, 21)])),
    # -- item 26: ids and choices that are not what the file says ----------------------------------------
    Case("csv-id-underscore", _imp("a.csv"), 2, r"a\.csv: line 2: id '1_0' is not an integer",
         _write("a.csv", "id,label\n1_0,zzz\n")),
    Case("csv-id-arabic-indic", _imp("a.csv"), 2, r"a\.csv: line 2: id '١٢' is not an integer",
         _write("a.csv", "id,label\n١٢,zzz\n")),
    Case("csv-id-fullwidth", _imp("a.csv"), 2, r"a\.csv: line 2: id '１２' is not an integer",
         _write("a.csv", "id,label\n１２,zzz\n")),
    Case("csv-id-plus", _imp("a.csv"), 2, r"a\.csv: line 2: id '\+12' is not an integer",
         _write("a.csv", "id,label\n+12,zzz\n")),
    Case("ls-id-float", _imp("ls.json"), 2, r"ls\.json: task 0: id 12\.0 is not an integer",
         _write("ls.json", [_task(0, 12.0, choices=["cat"])])),
    Case("ls-id-float-fraction", _imp("ls.json"), 2, r"ls\.json: task 0: id 12\.7 is not an integer",
         _write("ls.json", [_task(0, 12.7, choices=["cat"])])),
    Case("ls-id-bool", _imp("ls.json"), 2, r"ls\.json: task 0: id True is not an integer",
         _write("ls.json", [_task(0, True, choices=["cat"])])),
    Case("ls-id-digit-string", _imp("ls.json"), 0, "", _write("ls.json", [_task(0, "12", choices=["cat"])]),
         _labels_are({12: "cat"})),
    Case("ls-id-int-for-string-pool", _imp("ls.json", pool="spool", out="s.parquet"), 2,
         r"ls\.json: task 0: id 5 is a number, but the pool uses string ids",
         _write("ls.json", [_task(0, 5, choices=["cat"])])),
    Case("ls-choice-null", _imp("ls.json"), 2, r"ls\.json: task 0: choice None is not a non-empty string",
         _write("ls.json", [_task(0, 20, choices=[None])])),
    Case("ls-choice-empty", _imp("ls.json"), 2, r"ls\.json: task 0: choice '' is not a non-empty string",
         _write("ls.json", [_task(0, 20, choices=[""])])),
    Case("ls-choice-nested", _imp("ls.json"), 2, r"ls\.json: task 0: choice \['b'\] is not a non-empty string",
         _write("ls.json", [_task(0, 20, choices=["a", ["b"]])])),
    Case("ls-choices-empty-list", _imp("ls.json"), 2, r"ls\.json: task 0: .*no choices",
         _write("ls.json", [_task(0, 20, choices=[])])),
    Case("ls-annotations-string", _imp("ls.json"), 2, r"ls\.json: task 0: `annotations` is a str, not a list",
         _write("ls.json", [_task(0, 20, annotations="cat")])),
    Case("ls-result-dict", _imp("ls.json"), 2, r"ls\.json: task 0: annotation 0: `result` is a dict, not a list",
         _write("ls.json", [_task(0, 20, annotations=[{"id": 1, "result": {"choices": ["cat"]}}])])),
    Case("ls-value-list", _imp("ls.json"), 2, r"ls\.json: task 0: annotation 0: result 0: `value` is a list",
         _write("ls.json", [_task(0, 20, annotations=_ann([_choice(["cat"])]))])),
    Case("ls-not-objects", _imp("ls.json"), 2, r"ls\.json: task 0 is a int, not an object",
         _write("ls.json", [1, 2])),
    Case("ls-json-mixed-with-min", _imp("ls.json"), 2, r"ls\.json: task 1 has no `data` object, unlike task 0",
         _write("ls.json", [_task(0, 20, choices=["cat"]), _min_record(1, 21, "dog")])),
    Case("ls-empty-export", _imp("ls.json"), 2, r"ls\.json: an empty Label Studio export", _write("ls.json", [])),
    Case("ls-deep-nesting", _imp("ls.json"), 2, r"ls\.json: not a Label Studio JSON export .*nested too deeply",
         _write("ls.json", "[" * 100_000 + "]" * 100_000)),
    Case("ls-json-min-choice-null", _imp("ls.json", "--from-name", "choice"), 2,
         r"ls\.json: record 0: choice None is not",
         _write("ls.json", [{**_min_record(1, 41, "cat"), "choice": None}])),
    Case("ls-csv-choice-json", _imp("ls.csv", "--label-column", "choice", "--out", "{d}/m.parquet"), 0, "",
         _write("ls.csv", _ls_csv([(1, 41, '"{""choices"": [""cat"", ""dog""]}"'), (2, 42, "dog")])),
         _labels_are({41: ("cat", "dog"), 42: ("dog",)}, out="m.parquet")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_labels_case(case: Case, base: Path, tmp_path: Path, capsys):
    from alq.cli import run

    d = tmp_path / "d"
    shutil.copytree(base, d, symlinks=True)
    if case.setup is not None:
        case.setup(d)
    before, visible = _hashes(d), _visible(d)
    args = [a.replace("{d}", str(d)) for a in case.args]
    capsys.readouterr()
    code = run(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert code == case.code, f"exit {code}, expected {case.code}; stderr: {err}"
    if case.code != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), err
        assert re.search(case.stderr, lines[0]), f"{case.stderr!r} not in {lines[0]!r}"
        assert not (_visible(d) - visible), sorted(_visible(d) - visible)
    elif case.stderr:
        assert re.search(case.stderr, err), f"{case.stderr!r} not in {err!r}"
    outs = {str(Path(args[i + 1]).relative_to(d)) for i, a in enumerate(args) if a == "--out"}
    after = _hashes(d)
    changed = sorted(k for k, h in before.items() if after.get(k) != h and not (code == 0 and k in outs))
    assert not changed, f"pre-existing files changed: {changed}"
    if case.check is not None:
        case.check(d, out)
