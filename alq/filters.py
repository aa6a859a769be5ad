"""Restrict and balance a selection: ``--where`` and ``--balance-by`` (``alq select``, ``alq simulate``).

``--where "SQL predicate"``: a boolean SQL expression over the metadata
columns the pool kept from its input (``alq embed``), plus ``id``, e.g.
``camera = 'front' AND captured_at >= '2026-11-01'``. DuckDB evaluates it on
each shard's id/metadata Parquet (a map over shard-aligned ranges, like every
pool-wide pass); rows where it is false or NULL are excluded exactly like
labeled rows. The predicate is parsed by DuckDB as ONE expression
(``duckdb.SQLExpression``): no statements, no subqueries over other tables.
An unknown column, a type mismatch (``camera > 5`` on a text column), an
aggregate or a non-boolean expression is one ``Error:`` line (exit 2),
raised before anything is written.

``--balance-by COLUMN | predicted | column:NAME``: the batch is spread evenly
over the values of a pool metadata column (``predicted``: the head's
predicted class, as BASE balances; ``column:NAME`` names a column even when
it is called ``predicted``). Quotas are water-filled: each value present
among the selectable rows gets floor(b/V) or ceil(b/V) rows (the +1s go to a
seeded random choice of values); a value with fewer selectable rows than its
share gives all it has and the rest is spread over the others. Each value's
share is filled by the strategy's own ranking run on that value's rows alone:
one strategy pass per value with a non-zero quota, except for the per-row
measures (margin, least-confidence, entropy), whose shares all come from one
grouped top-k pass with exactly the same rows and scores. The merged batch is
ranked round-robin over values (value order: sorted; NULL last), each
value's rows in its own rank order; the ``balance_value`` column says which
value's share took the row.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from alq.errors import BadInputError, MissingFeatureError

PREDICTED = "predicted"
COLUMN_PREFIX = "column:"
MAX_BALANCE_VALUES = 1000  # one strategy pass per value: more values than this is refused
_ROW = "__alq_row"


# -- --where ------------------------------------------------------------------------------------

def _duckdb():
    try:
        import duckdb
    except ImportError:  # pragma: no cover - a runtime dependency; only a broken install lacks it
        raise MissingFeatureError("--where needs DuckDB (pip install duckdb)") from None
    return duckdb


def pool_schema(pool) -> pa.Schema:
    """The schema --where sees: ``id`` plus the metadata columns the pool keeps."""
    if hasattr(pool, "shard_schema") and pool.n_shards:
        return pool.shard_schema(0)
    return pa.schema([("id", pa.int64() if pool.id_type == "int64" else pa.string())])


def _referenced(schema: pa.Schema, predicate: str) -> list[str]:
    """Columns the predicate may name: a superset (case-insensitive substring), so only those are read."""
    low = predicate.lower()
    return [f.name for f in schema if f.name.lower() in low]


def _shard_table(pool, shard: int, columns: list[str]) -> pa.Table:
    if hasattr(pool, "shard_table"):
        return pool.shard_table(shard, columns=columns)
    t = pa.table({"id": pa.array(pool.shard_ids(shard).tolist())})  # an in-memory pool keeps ids only
    return t.select(columns)


def _where_error(predicate: str, exc: Exception, schema: pa.Schema) -> BadInputError:
    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    for prefix in ("Binder Error: ", "Parser Error: ", "Conversion Error: ", "Invalid Input Error: ",
                   "Catalog Error: "):
        msg = msg.replace(prefix, "")
    cols = ", ".join(f"{f.name} ({f.type})" for f in schema)
    return BadInputError(f"--where {predicate!r}: {msg}", hint=f"the pool's columns: {cols}")


def _evaluate(table: pa.Table, predicate: str, schema: pa.Schema) -> np.ndarray:
    """bool (rows,): the predicate on each row of ``table`` (NULL = false)."""
    duckdb = _duckdb()
    import pyarrow.compute as pc

    con = duckdb.connect()
    try:
        rel = con.from_arrow(table)
        try:
            expr = duckdb.SQLExpression(predicate)
            if table.num_rows == 0:  # checking: a WHERE clause refuses aggregates and window functions
                rel.filter(duckdb.SQLExpression(predicate)).fetchall()
            proj = rel.project(expr.alias("__alq_keep"))
            kind = str(proj.types[0])
            if kind != "BOOLEAN":
                raise BadInputError(f"--where {predicate!r} is of type {kind}, not a true/false condition",
                                    hint="compare a column, e.g. \"camera = 'front'\"")
            keep = proj.arrow()
        except BadInputError:
            raise
        except Exception as exc:  # duckdb's error types: binder, parser, conversion, invalid input
            raise _where_error(predicate, exc, schema) from None
    finally:
        con.close()
    col = keep.column(0) if isinstance(keep, pa.Table) else keep.read_all().column(0)
    if len(col) != table.num_rows:
        raise BadInputError(f"--where {predicate!r} does not give one value per row")
    return np.asarray(pc.fill_null(col, False).to_numpy(zero_copy_only=False), dtype=bool)


def check_where(pool, predicate: str) -> None:
    """Bind (and type-check) the predicate on the pool's schema before any long pass."""
    if not predicate or not predicate.strip():
        raise BadInputError("--where is empty", hint="e.g. --where \"camera = 'front'\"")
    schema = pool_schema(pool)
    _evaluate(schema.empty_table(), predicate, schema)


def where_partial(pool, lo: int, hi: int, predicate: str, columns: list[str]) -> np.ndarray:
    """Map task: bool (hi - lo,) = the predicate on pool rows [lo, hi) (shard-aligned)."""
    schema = pool_schema(pool)
    offsets = np.asarray(pool.offsets)
    out = []
    for s in range(pool.n_shards):
        s0, s1 = int(offsets[s]), int(offsets[s + 1])
        if s1 <= lo or s0 >= hi or s1 == s0:
            continue
        table = _shard_table(pool, s, columns)
        if table.num_rows != s1 - s0:
            raise BadInputError(f"{pool.path}: shard {s} holds {table.num_rows} id rows, the manifest says {s1 - s0}")
        out.append(_evaluate(table, predicate, schema)[max(lo, s0) - s0:min(hi, s1) - s0])
    return np.concatenate(out) if out else np.zeros(hi - lo, dtype=bool)


def where_mask(pool, predicate: str, engine=None) -> np.ndarray:
    """bool (N,): pool rows where ``predicate`` is true. One read of the referenced columns, per shard."""
    check_where(pool, predicate)
    if engine is None:
        from alq.engine import LocalEngine

        engine = LocalEngine()
    columns = _referenced(pool_schema(pool), predicate)
    parts = engine.map_pool(where_partial, pool, predicate, columns)
    mask = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    if len(mask) != pool.count:
        raise BadInputError(f"--where gave {len(mask)} values for {pool.count} pool rows")
    return mask


def apply_where(pool, predicate: str | None, excluded: np.ndarray, engine=None) -> dict:
    """Exclude (in place) the rows where ``predicate`` is not true; return summary entries."""
    if predicate is None:
        return {}
    mask = where_mask(pool, predicate, engine)
    newly = ~mask & ~excluded
    excluded |= ~mask
    return {"where": predicate, "where_matched": int(np.count_nonzero(mask)),
            "where_excluded": int(np.count_nonzero(newly))}


# -- --balance-by -------------------------------------------------------------------------------

def balance_column(pool, by: str) -> str | None:
    """The metadata column ``by`` names (None for the head's predicted class); unknown names are errors."""
    if not by or not by.strip():
        raise BadInputError("--balance-by is empty", hint="a pool column, or `predicted` for the head's class")
    if by == PREDICTED:
        return None
    name = by[len(COLUMN_PREFIX):] if by.startswith(COLUMN_PREFIX) else by
    schema = pool_schema(pool)
    if name not in schema.names:
        have = ", ".join(schema.names)
        raise BadInputError(f"--balance-by {by!r}: the pool keeps no column {name!r} (it keeps: {have})",
                            hint="`predicted` balances by the head's predicted class")
    t = schema.field(name).type
    if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise BadInputError(f"--balance-by {by!r}: column {name!r} is of type {t}; balance needs scalar values")
    return name


def column_partial(pool, lo: int, hi: int, column: str) -> tuple[list, np.ndarray]:
    """Map task: (distinct values, int32 code per row of [lo, hi)) of one metadata column."""
    import pyarrow.compute as pc

    offsets = np.asarray(pool.offsets)
    parts = []
    for s in range(pool.n_shards):
        s0, s1 = int(offsets[s]), int(offsets[s + 1])
        if s1 <= lo or s0 >= hi or s1 == s0:
            continue
        col = _shard_table(pool, s, [column]).column(0)
        parts.append(col.slice(max(lo, s0) - s0, min(hi, s1) - max(lo, s0)))
    if not parts:
        return [], np.zeros(0, np.int32)
    enc = pc.dictionary_encode(pa.chunked_array(parts).combine_chunks(), null_encoding="encode")
    return enc.dictionary.to_pylist(), np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int32)


def predicted_partial(pool, lo: int, hi: int, head, device: str | None) -> np.ndarray:
    """Map task: int32 (hi - lo,) predicted class index (argmax of the logits) of rows [lo, hi)."""
    from alq.scoring.stream import iter_logits, resolve_device

    out = np.empty(hi - lo, dtype=np.int32)
    for block, _, z in iter_logits(pool, head, lo=lo, hi=hi, device=resolve_device(device)):
        out[block.start - lo:block.stop - lo] = z.argmax(dim=1).cpu().numpy()
    return out


def _value_key(v):
    return (v is None, str(type(v).__name__), v if v is not None else 0)


def group_codes(ctx, by: str) -> tuple[np.ndarray, list]:
    """(int32 (N,) value index per pool row, the values) of ``--balance-by`` over ``ctx.pool``."""
    from alq.scoring.passes import _device_arg, _engine

    pool, engine = ctx.pool, _engine(ctx)
    column = balance_column(pool, by)
    if column is None:
        head = ctx.head
        if head is None:
            raise BadInputError("--balance-by predicted needs a head (--head HEAD.pt)")
        if head.multilabel:
            raise BadInputError("--balance-by predicted needs a single-label head; this head is multi-label",
                                hint="balance by a pool column instead")
        parts = engine.map_pool(predicted_partial, pool, head, _device_arg(ctx))
        codes = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        return codes, list(head.classes)
    parts = engine.map_pool(column_partial, pool, column)
    values: list = []
    for vals, _ in parts:
        values.extend(v for v in vals)
    uniq = sorted({(_value_key(v), i) for i, v in enumerate(values)}, key=lambda kv: kv[0])
    order, seen = [], set()
    for key, i in uniq:
        if key not in seen:
            seen.add(key)
            order.append(values[i])
    where = {_value_key(v): j for j, v in enumerate(order)}
    codes = np.empty(pool.count, dtype=np.int32)
    at = 0
    for vals, local in parts:
        remap = np.asarray([where[_value_key(v)] for v in vals], dtype=np.int32)
        codes[at:at + len(local)] = remap[local] if len(vals) else local
        at += len(local)
    return codes, order


def balance_quotas(available: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Water-filled quotas: an even share of ``budget`` per value, capped by what each value has.

    ``available``: int (V,) selectable rows per value. Values with rows get floor or ceil of the
    fair share (the +1s to a seeded random choice); shortfalls are spread over the rest.
    """
    available = np.asarray(available, dtype=np.int64)
    if budget > int(available.sum()):
        raise ValueError(f"budget {budget} exceeds the {int(available.sum())} selectable rows")
    quota = np.zeros(len(available), dtype=np.int64)
    active = [int(g) for g in np.flatnonzero(available > 0)]
    rest = int(budget)
    while rest > 0 and active:
        share = rest // len(active)
        small = [g for g in active if available[g] <= share]
        if small:  # these give everything they have; the others share what is left
            for g in small:
                quota[g] = available[g]
                rest -= int(available[g])
            active = [g for g in active if g not in set(small)]
            continue
        extra = rest - share * len(active)
        plus = set(rng.choice(active, size=extra, replace=False).tolist()) if extra else set()
        for g in active:
            quota[g] = share + (1 if g in plus else 0)
        rest = 0
    return quota


# Strategies whose ranking is a per-row measure: every value's share comes from ONE grouped top-k pass
# (exactly the rows and scores of running the strategy on each value's rows alone; tests/test_filters.py).
_PER_ROW = {"margin": "margin", "least-confidence": "least_confidence", "entropy": "entropy"}


def grouped_topk_partial(pool, lo: int, hi: int, head, measure: str, aggregate: str, quota: np.ndarray,
                         device: str | None, *, excluded: np.ndarray, codes: np.ndarray) -> dict:
    """Map task: {value: (rows, keys)} = the quota[value] smallest keys of each value's selectable rows."""
    from alq.scoring.stream import Buffers, head_block_rows, iter_logits, resolve_device
    from alq.scoring.topk import StreamingTopK
    from alq.scoring.uncertainty import DESCENDING, measures_from_logits

    dev = resolve_device(device)
    tops: dict = {}
    buffers = Buffers(dev)
    for block, _, z in iter_logits(pool, head, lo=lo, hi=hi, block_rows=head_block_rows(pool, head), device=dev,
                                   buffers=buffers):
        a, b = block.start - lo, block.stop - lo
        keep = ~excluded[a:b] & (quota[codes[a:b]] > 0)
        if not keep.any():
            continue
        work = buffers.get("work", len(z), tuple(z.shape[1:])) if measure == "entropy" else None
        values = measures_from_logits(z, multilabel=head.multilabel, aggregate=aggregate, which=(measure,),
                                      inplace=True, work=work)[measure]
        key = (-values if measure in DESCENDING else values).cpu().numpy()[keep]
        rows, c = block.indices[keep], codes[a:b][keep]
        order = np.argsort(c, kind="stable")
        c, key, rows = c[order], key[order], rows[order]
        cuts = np.flatnonzero(np.diff(c)) + 1
        for lo_i, hi_i in zip(np.r_[0, cuts], np.r_[cuts, len(c)]):
            g = int(c[lo_i])
            tops.setdefault(g, StreamingTopK(int(quota[g]))).push(key[lo_i:hi_i], rows[lo_i:hi_i])
    return {g: t.result() for g, t in tops.items()}


def _grouped_per_row(ctx, measure: str, codes: np.ndarray, quota: np.ndarray, groups: list[int]) -> list:
    """[(value, Selection)] of a per-row measure strategy for every value, from one grouped pass."""
    from alq.scoring.passes import _device_arg, _engine
    from alq.scoring.topk import StreamingTopK
    from alq.scoring.uncertainty import DESCENDING, check_aggregate
    from alq.strategies import Selection

    aggregate = check_aggregate(ctx.option("aggregate"))
    parts = _engine(ctx).map_pool(grouped_topk_partial, ctx.pool, ctx.head, measure, aggregate, quota,
                                  _device_arg(ctx), row_arrays={"excluded": ctx.excluded, "codes": codes})
    picks = []
    for g in groups:
        top = StreamingTopK(int(quota[g]))
        for part in parts:
            if g in part:
                top.push(part[g][1], part[g][0])
        idx, key = top.result()
        values = -key if measure in DESCENDING else key
        picks.append((g, Selection(indices=idx, scores=values, summary={"scores_source": "head"})))
    return picks


def balanced_select(strategy, ctx, by: str):
    """Run ``strategy`` once per value of ``by`` on that value's rows with its quota; merge round-robin."""
    from alq.strategies import Selection

    codes, values = group_codes(ctx, by)
    selectable = ~ctx.excluded
    available = np.bincount(codes[selectable], minlength=len(values))
    quota = balance_quotas(available, int(ctx.budget), ctx.rng(0xBA1))
    groups = [int(g) for g in np.flatnonzero(quota > 0)]
    per_row = _PER_ROW.get(strategy.name) if ctx.scores is None and ctx.head is not None else None
    if len(groups) > MAX_BALANCE_VALUES and per_row is None:
        raise BadInputError(f"--balance-by {by!r} spreads the batch over {len(groups)} values; at most "
                            f"{MAX_BALANCE_VALUES} (one {strategy.name} pass per value)",
                            hint="balance by a column with fewer values, or narrow the pool with --where")
    picks = _grouped_per_row(ctx, per_row, codes, quota, groups) if per_row is not None else []
    for g in groups if per_row is None else []:
        sub = dataclasses.replace(ctx, budget=int(quota[g]), excluded=ctx.excluded | (codes != g))
        sel = strategy.select(sub)
        if len(sel.indices) != quota[g]:
            from alq.errors import AlqFailure

            raise AlqFailure(f"strategy returned {len(sel.indices)} rows for value {values[g]!r}'s quota {quota[g]}")
        picks.append((g, sel))
    order = []  # round-robin over values, each in its own rank order
    for depth in range(int(quota.max()) if len(groups) else 0):
        for j, (_, sel) in enumerate(picks):
            if depth < len(sel.indices):
                order.append((j, depth))
    idx = np.asarray([picks[j][1].indices[d] for j, d in order], dtype=np.int64)
    scores = np.asarray([picks[j][1].scores[d] for j, d in order], dtype=np.float64)
    columns: dict = {}
    names = set.intersection(*(set(sel.columns) for _, sel in picks)) if picks else set()
    for name in sorted(names):
        columns[name] = np.asarray([np.asarray(picks[j][1].columns[name])[d] for j, d in order])
    columns["balance_value"] = np.asarray(["null" if values[picks[j][0]] is None else str(values[picks[j][0]])
                                           for j, _ in order], dtype=object)
    summary = dict(picks[0][1].summary) if picks else {}  # e.g. scores_source: the same for every value
    for key, value in list(summary.items()):  # histograms (e.g. BASE's base_class_histogram): summed
        if isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
            total: dict = {}
            for _, sel in picks:
                for k, v in (sel.summary.get(key) or {}).items():
                    total[k] = total.get(k, 0) + v
            summary[key] = dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))
    summary.update({
        "balance_by": by,
        "balance_values": int(np.count_nonzero(available)),
        "balance_histogram": {("null" if values[g] is None else str(values[g])): int(quota[g]) for g in groups},
        "balance_passes": 1 if per_row is not None else len(groups),  # strategy passes after the grouping one
    })
    return Selection(indices=idx, scores=scores, columns=columns, summary=summary)
