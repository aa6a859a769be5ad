"""The run directory of ``alq simulate``: config, per-round checkpoints, results.

Layout::

    RUN_DIR/config.json                      what was asked + input fingerprints
    RUN_DIR/results.parquet                  one row per (strategy, repeat, round)
    RUN_DIR/selections/_seed-set/r<R>.parquet           seed set of repeat R
    RUN_DIR/selections/<strategy>/r<R>-round<K>.parquet  rows bought in round K
    RUN_DIR/state/<strategy>/r<R>/round-<K>.json        the round's metrics (commit mark)
    RUN_DIR/state/<strategy>/r<R>/head-<K>.pt           head after round K (latest only)

A round is committed by writing its JSON record last, after its selection
and head are in place (each written atomically). A killed run therefore
leaves every committed round complete and at most one uncommitted round,
which ``--resume`` redoes from the same derived seeds: the resumed results
equal an uninterrupted run's (wall-clock seconds aside). The same command run
again without ``--resume`` continues a run that never finished (same
settings), or starts over when it committed no round; a run that failed
before committing any round removes what it wrote.

A run staged locally for an ``s3://`` / ``gs://`` output is published to it
as it goes (:class:`RemoteCheckpoint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

from alq.errors import BadInputError
from alq.io import read_json, write_json

SEED_SET = "_seed-set"  # strategy names never start with "_"
CONFIG = "config.json"
RESULTS = "results.parquet"
LOCK = ".lock"


def derive_seed(seed: int, *parts) -> int:
    """A 31-bit seed from the run seed and a path of names/numbers.

    Every random choice of a run draws from its own derived seed, so any
    round can be recomputed alone (which is what makes resuming exact).
    """
    h = hashlib.sha256("|".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.created = False  # whether open() made the directory (a failed first run removes it again)
        self.resumed_unfinished = False  # whether open() continued a run that failed before it finished

    # -- paths ----------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def state_dir(self, strategy: str, repeat: int) -> Path:
        return self.path / "state" / strategy / f"r{repeat}"

    def record_path(self, strategy: str, repeat: int, rnd: int) -> Path:
        return self.state_dir(strategy, repeat) / f"round-{rnd}.json"

    def head_path(self, strategy: str, repeat: int, rnd: int) -> Path:
        return self.state_dir(strategy, repeat) / f"head-{rnd}.pt"

    def selection_path(self, strategy: str, repeat: int, rnd: int) -> Path:
        if strategy == SEED_SET:
            return self.path / "selections" / SEED_SET / f"r{repeat}.parquet"
        return self.path / "selections" / strategy / f"r{repeat}-round{rnd}.parquet"

    # -- opening --------------------------------------------------------------------------------
    def open(self, config: dict, *, resume: bool, overwrite: bool) -> dict:
        """Create the run (or check ``config`` against the one being resumed). Returns the config in force."""
        exists = self.config_path.exists()
        self.resumed_unfinished = False
        if exists and not resume and not overwrite and not self.finished():
            # a run that failed or was killed (disk full, SIGKILL, a reboot) before it finished: the same
            # command run again (the nightly job) continues it, or starts over when it committed nothing
            self._check_lock()
            if not self.committed_any():
                overwrite = True
            else:
                old = read_json(self.config_path, what="run config")
                try:
                    same = merge_config(old, config, where=str(self.config_path)) == old
                except BadInputError:
                    same = False
                if same:
                    resume, self.resumed_unfinished = True, True
        if exists and overwrite and not resume:
            self._check_lock()
            self._clear()
            exists = False
        elif not exists and self.path.exists() and any(p.name != LOCK for p in self.path.iterdir()):
            raise BadInputError(f"{self.path}: exists and is not an alq simulate run directory",
                                hint="choose an empty or new --out")
        elif exists and not resume:
            raise BadInputError(f"{self.path}: already holds a simulation run",
                                hint="pass --resume to continue it, or --overwrite to start over")
        if not exists:
            self.created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            try:
                write_json(self.config_path, config)
            except BaseException:  # (disk full): leave no empty run directory behind
                self.release()
                if self.created:
                    with contextlib.suppress(OSError):
                        self.path.rmdir()
                raise
            return config
        old = read_json(self.config_path, what="run config")
        merged = merge_config(old, config, where=str(self.config_path))
        self._take_lock()
        if merged != old:
            write_json(self.config_path, merged)
        return merged

    def _clear(self) -> None:
        for name in ("state", "selections"):
            shutil.rmtree(self.path / name, ignore_errors=True)
        for name in (CONFIG, RESULTS):
            (self.path / name).unlink(missing_ok=True)

    def finished(self) -> bool:
        """True when the run wrote its final results (``complete`` in results.parquet's metadata)."""
        if not self.results_path.exists():
            return False
        from alq.io import parquet_metadata

        try:
            return bool(parquet_metadata(self.results_path).get("complete"))
        except (BadInputError, OSError):
            return False

    def committed_any(self) -> bool:
        """Whether any round (the seed set included) was committed."""
        return any((self.path / "state").rglob("round-*.json")) if (self.path / "state").is_dir() else False

    def abandon(self, *, created: bool) -> None:
        """After a failed run that committed no round: remove what it wrote (the directory too, if it made it),
        so no partial output is left; a run with committed rounds stays, for the rerun to continue."""
        if self.committed_any() or not self.config_path.exists():
            return
        self._clear()
        (self.path / LOCK).unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def _check_lock(self) -> None:
        lock = self.path / LOCK
        try:
            info = json.loads(lock.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        if info.get("host") == socket.gethostname() and _alive(int(info.get("pid", -1))) \
                and int(info.get("pid", -1)) != os.getpid():
            raise BadInputError(f"{self.path}: another alq simulate (pid {info['pid']}) is writing this run",
                                hint="wait for it, or stop it first")

    def _take_lock(self) -> None:
        self._check_lock()
        write_json(self.path / LOCK, {"pid": os.getpid(), "host": socket.gethostname()})

    def release(self) -> None:
        (self.path / LOCK).unlink(missing_ok=True)

    # -- rounds ---------------------------------------------------------------------------------
    def committed_rounds(self, strategy: str, repeat: int, n_rounds: int) -> int:
        """Largest K such that rounds 0..K (1..K for strategies) are all committed; -1 if none."""
        first = 0 if strategy == SEED_SET else 1
        k = first - 1
        while k + 1 <= n_rounds and self.record_path(strategy, repeat, k + 1).exists():
            k += 1
        return k

    def read_record(self, strategy: str, repeat: int, rnd: int) -> dict:
        return read_json(self.record_path(strategy, repeat, rnd), what="round record")

    def commit(self, strategy: str, repeat: int, rnd: int, record: dict, *, selection_table, head) -> None:
        """Write selection, head, then the record (the commit mark); drop the previous head."""
        import pyarrow as pa

        from alq.io import write_parquet

        n = selection_table.num_rows  # each file says which run cell it is: `selections/` reads as one table
        selection_table = (selection_table.append_column("strategy", pa.array([strategy] * n, pa.string()))
                           .append_column("repeat", pa.array([repeat] * n, pa.int64()))
                           .append_column("round", pa.array([rnd] * n, pa.int64())))
        write_parquet(self.selection_path(strategy, repeat, rnd), selection_table,
                      {"kind": "simulation-selection", "strategy": strategy, "repeat": repeat, "round": rnd})
        head.save(self.head_path(strategy, repeat, rnd))
        write_json(self.record_path(strategy, repeat, rnd), record)
        if rnd > 0:
            prev = self.head_path(strategy, repeat, rnd - 1)
            if strategy != SEED_SET and rnd - 1 >= 1:
                prev.unlink(missing_ok=True)


def merge_config(old: dict, new: dict, *, where: str) -> dict:
    """The config of a resumed run: strategies and repeats may grow, rounds may extend; nothing else may change."""
    o, n = old.get("experiment", {}), new.get("experiment", {})
    for key in sorted(set(o) | set(n)):
        if key in ("strategies", "repeats", "budgets"):
            continue
        if o.get(key) != n.get(key):
            raise BadInputError(f"{where}: this run was started with {key}={_short(o.get(key))}, "
                                f"not {_short(n.get(key))}",
                                hint="resume with the original settings, or use a new --out")
    ob, nb = list(o.get("budgets", [])), list(n.get("budgets", []))
    if nb[:len(ob)] != ob and ob[:len(nb)] != nb:
        raise BadInputError(f"{where}: this run buys {ob} labels per round, not {nb}",
                            hint="resume with the original --budget/--rounds, or use a new --out")
    if len(nb) < len(ob):  # would be ignored: the stored rounds run anyway
        raise BadInputError(f"{where}: this run has {len(ob)} rounds; --resume with {len(nb)} would still run "
                            f"all {len(ob)}", hint=f"resume with --rounds {len(ob)} (or more, to extend it), "
                            "or use a new --out")
    orep, nrep = int(o.get("repeats", 0)), int(n.get("repeats", 0))
    if nrep < orep:
        raise BadInputError(f"{where}: this run has {orep} repeats; --resume with --repeats {nrep} would still "
                            f"run all {orep}", hint=f"resume with --repeats {orep} (or more), or use a new --out")
    merged = json.loads(json.dumps(old))
    exp = merged["experiment"]
    exp["strategies"] = list(o.get("strategies", [])) + [s for s in n.get("strategies", [])
                                                        if s not in o.get("strategies", [])]
    exp["repeats"] = max(int(o.get("repeats", 0)), int(n.get("repeats", 0)))
    exp["budgets"] = nb if len(nb) > len(ob) else ob
    return merged


def _short(value) -> str:
    s = json.dumps(value, default=str)
    return s if len(s) <= 80 else s[:77] + "..."


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RemoteCheckpoint:
    """Publish a locally staged run directory to its URI every ``interval`` seconds of rounds.

    A killed run then loses at most that much work: ``--resume`` downloads the
    last published generation and continues from its committed rounds. The
    run's local lock file is not published (it names a process on this host).
    """

    def __init__(self, local_dir: Path, uri: str, *, interval: float | None = None):
        from alq.config import env_number

        self.local_dir, self.uri, self.lock = Path(local_dir), uri, LOCK
        self.interval = env_number("ALQ_CHECKPOINT_SECONDS", 60.0, what="seconds", minimum=-1) \
            if interval is None else float(interval)
        self.last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last < self.interval:
            return
        from alq import fs

        fs.publish_dir(self.local_dir, self.uri, skip={self.lock})
        self.last = time.monotonic()
