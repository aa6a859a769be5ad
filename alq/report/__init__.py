"""``alq report``: what a simulation says, as tables, plots and Markdown.

:func:`build_report` reads results.parquet, computes every number
(:mod:`alq.report.analysis`), draws the plots (:mod:`alq.report.plots`) and
writes ``report.md`` and ``report.json`` into the report folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from alq.io import apply_umask, atomic_path, replace_dir, write_json
from alq.report.analysis import load_results, summarize
from alq.report.checks import report_warnings


def build_report(results: str | Path, out: str | Path | None, *, metric: str | None = None,
                 baseline: str = "random", alpha: float = 0.05) -> dict:
    """Summarise ``results``; when ``out`` is given write plots, report.md and report.json there."""
    from alq.errors import BadInputError

    if not 0 < alpha < 1:
        raise BadInputError(f"--alpha={alpha} must be in (0, 1)")
    s = summarize(load_results(results), metric=metric, baseline=baseline, alpha=alpha)
    s["warnings"] = list(s.get("warnings") or []) + [w for w in report_warnings(s) if w not in (s.get("warnings") or [])]
    if out is not None:
        from alq.guard import kind_of
        from alq.report.plots import render_all
        from alq.report.tables import render_markdown

        out = Path(out)
        if kind_of(out) not in (None, "report"):  # the whole folder is replaced: never someone else's
            raise BadInputError(f"{out}: exists and is not an alq report folder; refusing to replace it",
                                hint="choose another --out")
        from alq.store.debris import sole_writer

        out.parent.mkdir(parents=True, exist_ok=True)
        # one writer at a time; a killed one's .building (or a report it moved aside) is cleared (put back) first
        with sole_writer(out, what="`alq report`"):
            # built beside OUT and swapped in whole: a kill never leaves new plots next to an old report.md
            build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
            try:
                apply_umask(build)
                plots = render_all(s, build)
                with atomic_path(build / "report.md") as tmp:
                    md = render_markdown(s, plots)
                    if s["warnings"]:
                        md = md.rstrip("\n") + "\n\n## Warnings\n\n" + "".join(f"- {w}\n" for w in s["warnings"])
                    tmp.write_text(md)
                write_json(build / "report.json", s)
                replace_dir(build, out)
            except BaseException:
                shutil.rmtree(build, ignore_errors=True)
                raise
        plots = {k: out / Path(v).name for k, v in plots.items()}
        s["report_dir"] = str(out)
        s["plots"] = {k: str(v) for k, v in plots.items()}
    return s


__all__ = ["build_report", "load_results", "summarize"]
