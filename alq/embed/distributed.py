"""``alq embed --engine ray``: Ray tasks encode slices of the inputs and write whole shards.

What travels to a task is a :class:`PartJob`: input names (local paths on a
shared filesystem, or URIs), row ranges, reader options, the encoder's
name, the ids plan and the pool's :class:`~alq.store.parts.PartSpec`. No
rows. Each task opens its inputs and loads the encoder itself, encodes on
its own device (CUDA when Ray gave it a GPU) and writes its shards with
:func:`~alq.store.parts.write_part` straight to the pool's location. The
driver holds the pool's writer (and so its lock), adopts the shards in
order, and commits once (manifest last).

Shard names are planned (:mod:`alq.embed.plan`) and each file is published
whole, so a task that Ray retries after its worker died rewrites the same
names: one copy of each shard. Encoder batches follow the same grid as the
local engine's (multiples of ``--batch-size`` from each input's first row;
a task that starts mid-batch encodes the whole batch and keeps its rows),
so the pool is byte-for-byte the one ``--engine local`` builds on the same
device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from alq import fs
from alq.config import rows_per_block
from alq.embed.plan import TaskRange, plan_tasks, shard_origins
from alq.embed.sources import IdStream, Source, check_id_text, open_source
from alq.embed.staged import staged
from alq.errors import AlqError, BadInputError
from alq.store.manifest import ShardInfo
from alq.store.parts import PartSpec, write_part
from alq.store.writer import PoolWriter

TASKS_PER_SLOT = 4  # tasks per Ray worker slot: enough to balance uneven workers, few encoder loads


@dataclass(frozen=True)
class IdsPlan:
    """Where a task's ids come from: ``inputs`` (each input's own), ``generated``, or ``--ids`` files."""

    mode: str  # "inputs" | "generated" | "one" (one file for all inputs, in order) | "each" (one per input)
    files: tuple[str, ...] = ()  # where to read them (absolute paths or URIs)
    names: tuple[str, ...] = ()  # as typed
    generated_start: int | None = None  # id of global row 0 (mode "generated")


@dataclass(frozen=True)
class PartJob:
    """Everything one task needs: names and row ranges, never rows."""

    spec: PartSpec
    task: TaskRange
    inputs: tuple[str, ...]  # where to read each input (absolute paths or URIs)
    names: tuple[str, ...]  # each input as typed (error lines and the shards' sources)
    rows: tuple[int, ...]  # each input's row count (checked again by the task)
    reader: dict  # open_source keyword arguments
    ids: IdsPlan
    encoder: str | None = None
    encoder_name: str | None = None
    batch_size: int = 256
    trust_encoder: bool = False


@dataclass(frozen=True)
class PartResult:
    shards: list[ShardInfo]
    dim: int
    seconds: float = 0.0  # the task's own time (encoder load, reads, encoding, writes)


# -- the task ---------------------------------------------------------------------------------
def run_part(job: PartJob) -> PartResult:
    """Encode and write one task's rows (runs in a Ray worker; a retry rewrites the same shards)."""
    t0 = time.perf_counter()
    renames = dict(zip(job.inputs, job.names)) | dict(zip(job.ids.files, job.ids.names))
    if job.encoder is not None:
        renames[job.encoder] = job.encoder_name
    _check_visible(job)
    try:
        with contextlib.ExitStack() as stack:
            encoder = None
            if job.encoder is not None:
                from alq.embed.encoder import Encoder

                path = stack.enter_context(staged(job.encoder, what="encoder"))
                encoder = Encoder(path, batch_size=job.batch_size, trust=job.trust_encoder)
            seen: dict[str, int] = {}
            gen = job.ids.generated_start + job.task.lo if job.ids.mode == "generated" else None
            shards = write_part(job.spec, job.task.first_shard, _batches(job, encoder, stack, seen),
                                generated_id_start=gen)
            return PartResult(shards=shards, dim=seen.get("dim", job.spec.dim or 0),
                              seconds=time.perf_counter() - t0)
    except AlqError as exc:
        raise _renamed(exc, renames) from None


def _check_visible(job: PartJob) -> None:
    """Local paths must be on a filesystem this worker shares with the driver: say so plainly if not."""
    import socket

    wanted = [(a, b) for a, b in zip(job.inputs, job.names)] + list(zip(job.ids.files, job.ids.names))
    if job.encoder is not None:
        wanted.append((job.encoder, job.encoder_name))
    wanted.append((job.spec.location, "the pool's build directory"))
    for where, name in wanted:
        if not fs.is_remote(where) and not Path(where).exists():
            raise BadInputError(f"{name}: not visible on Ray worker {socket.gethostname()} ({where})",
                                hint="put inputs and --out on a filesystem every worker mounts at the same path, "
                                     "or on s3:// / gs://")


def _renamed(exc: AlqError, renames: dict[str, str]) -> AlqError:
    """The error with the task's absolute paths replaced by the names the user typed."""
    msg = str(exc)
    for a, b in sorted(renames.items(), key=lambda kv: -len(kv[0])):
        if a != b:
            msg = msg.replace(a, b)
    return exc if msg == str(exc) else type(exc)(msg, hint=exc.hint)


def _batches(job: PartJob, encoder, stack: contextlib.ExitStack, seen: dict) -> Iterator[tuple]:
    """(vectors, ids, columns, source, row0) over the task's rows, as the local engine reads them."""
    ids_one = None
    for piece in job.task.pieces:
        src = open_source(job.inputs[piece.input], raw=encoder is not None, **job.reader)
        if src.rows != job.rows[piece.input]:
            raise BadInputError(f"{job.names[piece.input]}: has {src.rows} rows, but had {job.rows[piece.input]} "
                                "when the job was planned (changed while embedding?)")
        ids = None
        if job.ids.mode == "one":
            if ids_one is None:
                ids_one = _id_stream(job, 0, stack)
                ids_one.skip(piece.offset)
            ids = ids_one
        elif job.ids.mode == "each":
            ids = _id_stream(job, piece.input, stack)
            ids.skip(piece.start)
        name = job.names[piece.input]
        for vectors, batch_ids, columns, row0 in _piece_rows(src, piece.start, piece.stop, encoder, job.batch_size):
            if ids is not None:
                batch_ids = ids.take(len(vectors))
            if job.ids.mode == "generated":
                batch_ids = None
            check_id_text(batch_ids, name, row0)
            seen.setdefault("dim", int(vectors.shape[1]) if vectors.ndim == 2 else 0)
            yield vectors, batch_ids, columns, name, row0


def _id_stream(job: PartJob, i: int, stack: contextlib.ExitStack) -> IdStream:
    path = stack.enter_context(staged(job.ids.files[i], what="ids file"))
    return IdStream(path)


def _piece_rows(src: Source, start: int, stop: int, encoder, batch_size: int) -> Iterator[tuple]:
    """Rows [start, stop) of one input, encoded on the local engine's batch grid."""
    bytes_per_row = src.row_bytes() + 4 * ((src.dim if encoder is None else None) or src.dim or 256) * 3 + 64
    block = rows_per_block(bytes_per_row)
    if encoder is None:
        for b in src.batches(block, start, stop):
            yield b.vectors, b.ids, b.columns, b.row0
        return
    block = max(block // batch_size, 1) * batch_size
    a = start - start % batch_size  # the batch this task's first row falls in
    z = min(src.rows, -(-stop // batch_size) * batch_size)
    for b in src.batches(block, a, z):
        lo, hi = max(start - b.row0, 0), min(stop - b.row0, len(b.vectors))
        if hi <= lo:
            continue
        vectors = encoder.encode(b.vectors, source=src.name, row0=b.row0)[lo:hi]
        ids = b.ids[lo:hi] if b.ids is not None else None
        yield vectors, ids, None, b.row0 + lo


# -- the driver ---------------------------------------------------------------------------------
def write_distributed(writer: PoolWriter, engine, sources: list[Source], *, names: list[str], reader: dict,
                      ids: IdsPlan, encoder: str | None, encoder_name: str | None, batch_size: int,
                      trust_encoder: bool, columns_schema, id_type: str | None, tasks: int | None = None,
                      progress: Callable[[str, int, int], None] | None = None,
                      task_fn: Callable = run_part) -> dict:
    """Run the tasks and adopt their shards into ``writer`` (the caller commits with ``writer.close()``).

    Returns timings: the number of tasks, the sum and max of the tasks' own
    seconds, the wall time of the task run and of the adoption (reading back
    every shard's ids).
    """
    spec = writer.part_spec()
    if spec.id_type is None and id_type is not None:
        spec = dataclasses.replace(spec, id_type=id_type)
    if spec.columns_schema is None and columns_schema is not None:
        if writer.base_count:  # the local engine refuses this at the first batch
            raise BadInputError(f"{names[0]}: has metadata columns ({', '.join(columns_schema.names)}) but the "
                                "pool's earlier rows have none", hint="pass --keep-columns none")
        spec = dataclasses.replace(spec, columns_schema=columns_schema)
    if ids.mode == "generated":
        ids = dataclasses.replace(ids, generated_start=writer.next_generated_id())
    rows = [s.rows for s in sources]
    n_tasks = tasks or max(1, TASKS_PER_SLOT * (engine.slots() if hasattr(engine, "slots") else 1))
    plan = plan_tasks(rows, spec.shard_rows, min(n_tasks, getattr(engine, "max_tasks", n_tasks)), writer.next_shard_number())
    inputs = tuple(str(s.path) if fs.is_remote(s.path) else str(Path(s.path).resolve()) for s in sources)
    jobs = [(PartJob(spec=spec, task=t, inputs=inputs, names=tuple(names), rows=tuple(rows), reader=reader,
                     ids=ids, encoder=encoder, encoder_name=encoder_name, batch_size=batch_size,
                     trust_encoder=trust_encoder),) for t in plan]
    done = [0]

    def step(_index: int) -> None:
        done[0] += 1
        if progress is not None:
            progress("embed (ray tasks)", done[0], len(jobs))

    t0 = time.perf_counter()
    try:
        results = engine.map(task_fn, jobs, on_done=step)
    except BaseException:
        _remove_planned(spec.location, plan, spec.shard_rows)
        raise
    t1 = time.perf_counter()
    for t, res in zip(plan, results):
        writer.adopt(res.shards, source=names[t.pieces[0].input], rows=shard_origins(t, names, spec.shard_rows),
                     dim=res.dim or None, id_type=spec.id_type, columns_schema=spec.columns_schema)
    secs = [r.seconds for r in results]
    return {"tasks": len(plan), "task_seconds_sum": round(sum(secs), 4), "task_seconds_max": round(max(secs), 4),
            "run_seconds": round(t1 - t0, 4), "adopt_seconds": round(time.perf_counter() - t1, 4)}


def _remove_planned(location: str, plan: list[TaskRange], shard_rows: int) -> None:
    """After a failed run: remove the shards tasks may have written (none is in any manifest yet)."""
    for t in plan:
        for k in range(-(-t.rows // shard_rows)):
            for ext in ("npy", "parquet"):
                with contextlib.suppress(Exception):
                    fs.delete(fs.join(location, f"shard-{t.first_shard + k:06d}.{ext}"))
