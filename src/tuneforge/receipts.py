"""Stage receipts and the drift report.

Every stage ends with `Receipt.finish`, which checks the accounting invariant
(records in = out + quarantined + deduplicated) and fails the stage on mismatch.
"""
from __future__ import annotations

import importlib.metadata
import platform
import resource
import time
from pathlib import Path
from typing import Any

import duckdb

from tuneforge.io import count_lines, git_revision, sha256_file, write_json
from tuneforge.records import (
    DriftFlag,
    DriftReport,
    DriftSeverity,
    FileDigest,
    RecordCounts,
    StageReceipt,
)


class AccountingError(RuntimeError):
    pass


def tool_versions(packages: list[str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not-installed"
    return versions


def digest(path: str | Path) -> FileDigest:
    path = Path(path)
    records = count_lines(path) if path.suffix == ".jsonl" else None
    return FileDigest(path=str(path), sha256=sha256_file(path), records=records)


class Receipt:
    def __init__(self, stage: str, params: dict[str, Any], packages: list[str] | None = None):
        self.stage = stage
        self.params = params
        self.packages = packages or ["pydantic", "duckdb", "tqdm"]
        self.started = time.monotonic()
        self.inputs: list[str | Path] = []
        self.outputs: list[str | Path] = []

    def finish(self, path: str | Path, *, records_in: int, records_out: int, quarantined: int = 0,
               deduplicated: int = 0, extra: dict[str, int] | None = None) -> StageReceipt:
        counts = RecordCounts(records_in=records_in, records_out=records_out,
                              quarantined=quarantined, deduplicated=deduplicated,
                              extra=dict(sorted((extra or {}).items())))
        holds = records_in == records_out + quarantined + deduplicated
        receipt = StageReceipt(
            stage=self.stage,
            inputs=[digest(p) for p in self.inputs if Path(p).is_file()],
            outputs=[digest(p) for p in self.outputs if Path(p).is_file()],
            counts=counts, invariant_holds=holds, params=self.params,
            git_revision=git_revision(), tool_versions=tool_versions(self.packages),
            duration_s=round(time.monotonic() - self.started, 3),
            peak_rss_mb=peak_rss_mb(),
        )
        write_json(path, receipt.model_dump(mode="json"))
        if not holds:
            raise AccountingError(
                f"{self.stage}: records in ({records_in}) != out ({records_out}) + quarantined "
                f"({quarantined}) + deduplicated ({deduplicated}); receipt at {path}")
        return receipt


# ---------------------------------------------------------------- drift

def scored_distributions(scored_jsonl: str | Path, fields: tuple[str, ...] = ("kind", "severity")
                         ) -> dict[str, Any]:
    """Shares per label field (the task's class and second field: kind, severity), product and
    score category; text-length quantiles."""
    con = duckdb.connect()
    src = f"read_json('{Path(scored_jsonl).as_posix()}', format='newline_delimited', " \
          "columns={text: 'VARCHAR', product: 'VARCHAR', category: 'VARCHAR', label: 'JSON'})"
    con.execute(f"CREATE TEMP VIEW scored AS SELECT * FROM {src}")
    total = con.execute("SELECT count(*) FROM scored").fetchone()[0]
    dims = {
        **{f: f"coalesce(label->>'{f}', '(none)')" for f in fields},
        "product": "product",
        "category": "category",
    }
    out: dict[str, Any] = {"records": total}
    for name, expr in dims.items():
        rows = con.execute(
            f"SELECT {expr} AS k, count(*)::DOUBLE / {max(total, 1)} AS share "
            "FROM scored GROUP BY k ORDER BY k").fetchall()
        out[name] = {k: round(v, 6) for k, v in rows}
    q = con.execute(
        "SELECT quantile_cont(length(text), [0.1, 0.5, 0.9, 0.99]) FROM scored").fetchone()[0]
    out["text_length"] = dict(zip(["p10", "p50", "p90", "p99"],
                                  [round(x, 2) for x in (q or [0, 0, 0, 0])], strict=True))
    return out


def peak_rss_mb(status: str | Path = "/proc/self/status") -> float:
    """This process's peak resident memory, in MB. Linux's VmHWM, not getrusage's ru_maxrss: the
    kernel carries ru_maxrss across exec, so a stage started by a large parent (dvc, the bench
    holding ten million entries) reported the parent's peak as its own."""
    try:
        for line in Path(status).read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:  # no procfs: ru_maxrss is the best there is
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def drift_report(current: dict[str, Any], previous: dict[str, Any] | None,
                 threshold: float, since: str | None = None) -> DriftReport:
    """Flag a share that moved by more than `threshold` (absolute) or a length
    quantile that moved by more than `threshold` (relative)."""
    flags: list[DriftFlag] = []
    if previous:
        for dim in [d for d in current if d not in ("records", "text_length")]:
            keys = sorted(set(current.get(dim, {})) | set(previous.get(dim, {})))
            for key in keys:
                cur, prev = current[dim].get(key, 0.0), previous.get(dim, {}).get(key, 0.0)
                if abs(cur - prev) > threshold:
                    flags.append(DriftFlag(dimension=dim, key=key, previous=prev, current=cur,
                                           change=round(cur - prev, 6)))
        for key, cur in current["text_length"].items():
            prev = previous.get("text_length", {}).get(key, 0.0)
            change = (cur - prev) / prev if prev else (1.0 if cur else 0.0)
            if abs(change) > threshold:
                flags.append(DriftFlag(dimension="text_length", key=key, previous=prev,
                                       current=cur, change=round(change, 6)))
    return DriftReport(threshold=threshold, has_previous=previous is not None,
                       severity=DriftSeverity.warn if flags else DriftSeverity.ok,
                       flags=flags, current=current, previous=previous, since=since)
