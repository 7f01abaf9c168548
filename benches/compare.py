#!/usr/bin/env python3
"""Persona vs DuckDB on the audience benchmark, side by side in one run.

What it does (see benches/README.md):

1. Generates the synthetic data set with `persona gen` (Parquet) into
   `<work>/<users>-<seed>/source`, unless it is already there.
2. Times `persona import` into a fresh store `<work>/<users>-<seed>/store` and, in the same run,
   DuckDB loading the same Parquet files into an in-memory database; reports wall time and peak
   RSS of both (skipped with --skip-import, which keeps an existing store).
3. Runs the queries of a query set -- `core`, the eight of benches/queries/ (q1..q8, the default),
   or `audience`, benches/queries-audience/ (a01, a02, ...) -- on
   - Persona, one fresh `persona sql` process per run (wall time of the process: process start,
     opening the store, planning, executing and writing the result to /dev/null);
   - Persona, all runs in ONE process (`--timing`, the statement repeated): per-statement time
     inside a warm session (planning + executing + writing the result);
   - DuckDB on the same Parquet files through views (`CREATE VIEW t AS SELECT * FROM
     read_parquet(...)`), in this Python process on one connection, `execute().fetchall()`.
   Each one warm-up + --runs timed runs; medians are reported.
4. Cross-checks the results of both engines (row count + digest of the sorted, normalised rows);
   a failure or a mismatch is reported as such with the reason, never as a ratio. Unless
   --skip-noindex, Persona's results with the indexes off are cross-checked too, so that a
   mismatch tells whether the indexes or the SQL semantics of the two engines are at stake.

Python 3.11, standard library plus duckdb (installed with pip on first use).
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The query sets: name -> folder. The query names are the folder's *.sql files (q1.sql -> q1).
QUERY_SETS = {
    "core": REPO / "benches" / "queries",  # Q1..Q8 of the audience benchmark (shared/bench-queries)
    "audience": REPO / "benches" / "queries-audience",  # a01..: more audience shapes
    "probe": REPO / "benches" / "queries-probe",  # p01..: shapes written to probe the compiler
}
DEFAULT_QUERY_SET = "core"
TABLES = ["users", "products", "channels", "purchases", "events", "user_tags"]
NOW = "2026-11-01 00:00:00"
# A query file whose leading comment says this is timed as COPY (<its SELECT>) TO '<file>.parquet'
# and its file compared (Q2).
COPY_MARKER = re.compile(r"^--.*wraps this SELECT in the engine's COPY", re.MULTILINE)
TIMING_LINE = re.compile(r"^(\d+) row\(s\) in ([0-9.]+) ms\s*$")


def ensure_duckdb():
    try:
        import duckdb  # noqa: F401
    except ImportError:
        print("installing duckdb (pip install --quiet duckdb) ...", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "duckdb"])
    import duckdb

    return duckdb


duckdb = ensure_duckdb()


# ----------------------------------------------------------------------------------------------
# helpers


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class ChildResult:
    seconds: float
    maxrss_kib: int | None
    returncode: int
    stdout: str
    stderr: str
    # Peak of RssAnon (memory the process allocated, not mapped files), sampled every 10 ms.
    peak_anon_kib: int | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error(self) -> str:
        lines = [line.strip() for line in self.stderr.strip().splitlines() if line.strip()]
        text = " | ".join(lines) if lines else "(no message)"
        return one_line(f"exit {self.returncode}: {text}")


GNU_TIME = "/usr/bin/time"


def run_child(cmd: list[str], cwd: Path | None = None, measure_rss: bool = False) -> ChildResult:
    """Runs a process; its wall time and, with measure_rss, its peak RSS (else maxrss_kib is None).

    Peak RSS comes from GNU time (`/usr/bin/time -f %M`) when present. Not from this process's
    wait4/RUSAGE_CHILDREN: on Linux a child forked from this (large, DuckDB-holding) Python process
    starts with the parent's RSS high-water mark, which survives exec, so ru_maxrss would report
    max(parent's RSS at fork, child's peak). Forked from the small `time` process the error is ~1 MiB.
    Without GNU time that upper bound is what is reported (and flagged by RSS_METHOD)."""
    use_time = measure_rss and HAVE_GNU_TIME
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        full = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if use_time else cmd
        started = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)
        sampler = AnonSampler(proc.pid, through_time=use_time) if measure_rss else None
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        peak_anon = sampler.stop() if sampler else None
        proc.returncode = os.waitstatus_to_exitcode(status)
        maxrss: int | None = None
        if use_time:
            numbers = [int(x) for x in rss.read().split() if x.isdigit()]
            maxrss = numbers[-1] if numbers else None
        elif measure_rss:
            maxrss = usage.ru_maxrss  # KiB on Linux; an upper bound, see above
        out.seek(0)
        err.seek(0)
        return ChildResult(
            seconds,
            maxrss,
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            peak_anon,
        )


class AnonSampler:
    """Samples a process's RssAnon from /proc every 10 ms on a thread: peak RSS also counts the
    pages of mapped files the process touched (Persona's plain copies and indexes, which stay in
    the page cache and are shared with every reader), this only what it allocated. With
    `through_time` the process is GNU time's child. None where /proc does not say."""

    def __init__(self, pid: int, through_time: bool) -> None:
        self.pid, self.through_time, self.peak = pid, through_time, None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def target(self) -> int | None:
        if not self.through_time:
            return self.pid
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def run(self) -> None:
        while not self.done.is_set():
            pid = self.target()
            if pid is not None:
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("RssAnon:"):
                            kib = int(line.split()[1])
                            self.peak = kib if self.peak is None else max(self.peak, kib)
                except (OSError, ValueError, IndexError):
                    pass
            self.done.wait(0.01)

    def stop(self) -> int | None:
        self.done.set()
        self.thread.join()
        return self.peak


def _have_gnu_time() -> bool:
    try:
        r = subprocess.run([GNU_TIME, "-f", "%M", "true"], capture_output=True, text=True, timeout=10)
        return r.returncode == 0 and r.stderr.strip().isdigit()
    except (OSError, subprocess.SubprocessError):
        return False


HAVE_GNU_TIME = _have_gnu_time()
RSS_METHOD = (
    "peak RSS of the process alone (GNU time %M)"
    if HAVE_GNU_TIME
    else "peak RSS from wait4 (no /usr/bin/time): an upper bound that may include this script's RSS"
)


def split_statements(sql: str) -> list[str]:
    """Splits SQL on ';' outside quotes and comments; drops comments-only pieces."""
    out, cur, i, n = [], [], 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            i = j  # drop the comment, keep the newline
            continue
        if c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            cur.append(" ")
            continue
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            cur.append(sql[i : j + 1])
            i = j + 1
            continue
        if c == ";":
            out.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:,.0f} MiB"


def sql_str(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def display_path(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_idle_fraction(seconds: float) -> float | None:
    """Share of all CPUs' time spent idle over the next `seconds` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total (without guest), idle + iowait

    try:
        t1, i1 = sample()
        time.sleep(seconds)
        t2, i2 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (i2 - i1) / (t2 - t1) if t2 > t1 else None


def wait_idle(max_seconds: float, what: str) -> bool:
    """Waits (at most max_seconds) until the machine is >= 90 % idle for 3 one-second samples, so
    that another job on a shared machine does not land in the measurement. False when it gave up
    (the measurement that follows may be disturbed)."""
    if max_seconds <= 0:
        return True
    started, quiet, idle = time.monotonic(), 0, None
    while time.monotonic() - started < max_seconds:
        idle = cpu_idle_fraction(1.0)
        if idle is None:
            return True
        quiet = quiet + 1 if idle >= 0.9 else 0
        if quiet >= 3:
            return True
    log(f"warning: the machine is still busy before {what} (idle {idle:.0%}); measuring anyway")
    return False


def mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------------------------
# normalisation and digests


def norm_value(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, decimal.Decimal)):
        s = f"{v:.2f}" if not isinstance(v, int) else str(v)
        if s.endswith(".00"):
            s = s[:-3]
        return "0" if s == "-0" else s
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat(sep=" ")
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(norm_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{norm_value(x)}" for k, x in sorted(v.items())) + "}"
    return str(v)


@dataclass
class Result:
    """One statement's result, normalised: column names (lower case) and sorted rows of strings."""

    columns: list[str]
    rows: list[tuple[str, ...]]

    @staticmethod
    def of(columns: list[str], rows: list[tuple]) -> "Result":
        cols = [c.lower() for c in columns]
        return Result(cols, sorted(tuple(norm_value(v) for v in r) for r in rows))

    def reordered(self, order: list[str]) -> list[tuple[str, ...]]:
        idx = [self.columns.index(c) for c in order]
        return sorted(tuple(r[i] for i in idx) for r in self.rows)

    def digest(self) -> str:
        h = hashlib.sha256()
        for r in self.reordered(sorted(self.columns)):
            h.update("\x1f".join(r).encode())
            h.update(b"\n")
        return h.hexdigest()[:16]


def compare_results(p: list[Result], d: list[Result]) -> tuple[bool, str]:
    if len(p) != len(d):
        return False, f"{len(p)} result(s) from persona vs {len(d)} from duckdb"
    notes = []
    for i, (a, b) in enumerate(zip(p, d), start=1):
        tag = f"statement {i}: " if len(p) > 1 else ""
        if sorted(a.columns) != sorted(b.columns):
            return False, f"{tag}columns differ: persona {a.columns} vs duckdb {b.columns}"
        if len(a.rows) != len(b.rows):
            return False, f"{tag}row count {len(a.rows)} (persona) vs {len(b.rows)} (duckdb)"
        order = sorted(a.columns)
        ra, rb = a.reordered(order), b.reordered(order)
        if ra != rb:
            diff = next(k for k, (x, y) in enumerate(zip(ra, rb)) if x != y)
            ndiff = sum(1 for x, y in zip(ra, rb) if x != y)
            return False, (
                f"{tag}{len(a.rows)} rows each but {ndiff} differ; first (sorted, columns {order}): "
                f"persona {ra[diff]} vs duckdb {rb[diff]}"
            )
        notes.append(f"{len(a.rows)} row(s) {a.digest()}")
    return True, "; ".join(notes)


# ----------------------------------------------------------------------------------------------
# the engines


class Persona:
    def __init__(self, binary: Path, store: Path, scratch: Path):
        self.binary, self.store, self.scratch = binary, store, scratch

    def sql_cmd(self, sql_file: Path, *extra: str) -> list[str]:
        return [str(self.binary), "sql", "--store", str(self.store), "--now", NOW, "-f", str(sql_file), *extra]

    def write(self, name: str, text: str) -> Path:
        path = self.scratch / name
        path.write_text(text)
        return path

    def check_results(self, q: str, statements: list[str], *extra: str) -> list[Result]:
        """Runs each statement once with Parquet output and reads it back (the check run); `extra`
        are more `persona sql` options (`--no-indexes`)."""
        results = []
        tag = "-noindex" if "--no-indexes" in extra else ""
        for i, stmt in enumerate(statements, start=1):
            out = self.scratch / f"{q}-persona-check{tag}-{i}.parquet"
            out.unlink(missing_ok=True)
            f = self.write(f"{q}-check{tag}-{i}.sql", stmt + ";\n")
            r = run_child(self.sql_cmd(f, "--format", "parquet", "--output", str(out), *extra))
            if not r.ok:
                raise RuntimeError(f"persona failed: {r.error()}")
            results.append(read_parquet_result(out))
        return results

    def check_copy(self, q: str, copy_statement: str, *extra: str) -> None:
        """Runs a COPY ... TO statement once (the check run of a COPY query); `extra` as above."""
        f = self.write(f"{q}-check-copy.sql", copy_statement + ";\n")
        r = run_child(self.sql_cmd(f, "--format", "csv", "--output", "/dev/null", *extra))
        if not r.ok:
            raise RuntimeError(f"persona failed: {r.error()}")

    def per_process(self, q: str, statements: list[str], runs: int) -> tuple[list[float], int | None, int | None]:
        """Warm-up + runs fresh processes; wall ms per timed run and the warm-up's peak RSS and
        peak anonymous RSS (KiB)."""
        f = self.write(f"{q}-run.sql", "".join(s + ";\n" for s in statements))
        times, rss, anon = [], None, None
        for k in range(runs + 1):
            # The warm-up run measures the peak RSS; the timed runs are not wrapped in GNU time.
            r = run_child(self.sql_cmd(f, "--format", "csv", "--output", "/dev/null"), measure_rss=k == 0)
            if not r.ok:
                raise RuntimeError(f"persona failed: {r.error()}")
            if k == 0:
                rss, anon = r.maxrss_kib, r.peak_anon_kib
            else:
                times.append(r.seconds * 1000)
        return times, rss, anon

    def in_process(self, q: str, make_statements, runs: int, indexes: bool = True) -> list[float]:
        """One process running the statements warm-up + runs times with --timing; ms per timed
        repetition (the statements of one repetition summed). indexes=False first runs
        `SET persona.use_indexes = false` (DataFusion's general path; its own timing line is dropped)."""
        reps = [make_statements(k) for k in range(runs + 1)]
        per_rep = len(reps[0])
        prefix = [] if indexes else ["SET persona.use_indexes = false"]
        name = f"{q}-inproc.sql" if indexes else f"{q}-inproc-noindex.sql"
        f = self.write(name, "".join(s + ";\n" for s in prefix + [s for rep in reps for s in rep]))
        r = run_child(self.sql_cmd(f, "--timing", "--format", "csv", "--output", "/dev/null"))
        if not r.ok:
            raise RuntimeError(f"persona failed: {r.error()}")
        ms = [float(m.group(2)) for line in r.stderr.splitlines() if (m := TIMING_LINE.match(line.strip()))]
        expected = per_rep * (runs + 1)
        if len(ms) == expected + len(prefix):
            ms = ms[len(prefix) :]
        if len(ms) != expected:
            raise RuntimeError(f"expected {expected} --timing lines, got {len(ms)}: {r.stderr[-300:]!r}")
        sums = [sum(ms[k * per_rep : (k + 1) * per_rep]) for k in range(runs + 1)]
        return sums[1:]


def read_parquet_result(path: Path) -> Result:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cur = con.execute(f"SELECT * FROM read_parquet({sql_str(path)})")
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    con.close()
    return Result.of(cols, rows)


def duckdb_connection(source: Path, threads: int | None) -> Any:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {threads}")
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet({sql_str(source / t / '*.parquet')})")
    return con


DUCKDB_LOAD_SCRIPT = r"""
import json, sys, time
import duckdb
def rss_kib():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    return 0
source, tables, threads = sys.argv[1], sys.argv[2].split(','), int(sys.argv[3])
con = duckdb.connect()
if threads:
    con.execute(f"SET threads = {threads}")
before = rss_kib()
started = time.perf_counter()
for t in tables:
    glob = (source + '/' + t + '/*.parquet').replace("'", "''")
    con.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{glob}')")
seconds = time.perf_counter() - started
after = rss_kib()
rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
mem = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0]
print(json.dumps({'seconds': seconds, 'rss_before_kib': before, 'rss_after_kib': after,
                  'duckdb_memory_bytes': mem, 'rows': rows}))
"""


# ----------------------------------------------------------------------------------------------
# steps


def find_persona(arg: str | None) -> Path:
    if arg:
        p = Path(arg).expanduser()
        if not p.is_file():
            sys.exit(f"error: --persona {p} does not exist")
        return p.resolve()
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "persona")
    candidates.append(Path.home() / ".cache" / "persona-target-release" / "release" / "persona")
    candidates.append(REPO / "target" / "release" / "persona")
    for c in candidates:
        if c.is_file():
            return c.resolve()
    tried = "\n  ".join(str(c) for c in candidates)
    sys.exit(
        "error: no release build of persona found; tried:\n  "
        + tried
        + "\nbuild it with:\n  CARGO_TARGET_DIR=$HOME/.cache/persona-target-release cargo build --release"
        + "\n(or pass --persona PATH)"
    )


def warn_if_stale(binary: Path) -> None:
    try:
        built = binary.stat().st_mtime
        newest = max(p.stat().st_mtime for p in (REPO / "src").rglob("*.rs"))
        if newest > built:
            log(f"warning: {binary} is older than the newest file in src/; rebuild it to measure the current code")
    except (OSError, ValueError):
        pass


def persona_version(binary: Path) -> str:
    try:
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def generate(binary: Path, base: Path, users: int, seed: int) -> tuple[Path, float | None]:
    source, done = base / "source", base / "source.done"
    if source.is_dir() and done.exists():
        log(f"data: reusing {source}")
        try:
            if json.loads(done.read_text()).get("binary_mtime", 0) < binary.stat().st_mtime:
                log(
                    "note: the data was generated by an older persona binary (the generator may have "
                    f"changed since); delete {base} to regenerate it"
                )
        except (OSError, ValueError):
            pass
        return source, None
    if source.exists():
        shutil.rmtree(source)
    base.mkdir(parents=True, exist_ok=True)
    log(f"data: persona gen --users {users} --seed {seed} --out {source} ...")
    r = run_child([str(binary), "gen", "--users", str(users), "--seed", str(seed), "--out", str(source), "--format", "parquet", "--quiet"])
    if not r.ok:
        sys.exit(f"error: persona gen failed: {r.error()}")
    log("data: " + r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "data: generated")
    done.write_text(
        json.dumps(
            {"users": users, "seed": seed, "persona": str(binary), "binary_mtime": binary.stat().st_mtime, "at": time.time()}
        )
    )
    return source, r.seconds


def import_store(binary: Path, source: Path, store: Path) -> ChildResult:
    if store.exists():
        shutil.rmtree(store)
    (store.parent / "store.done").unlink(missing_ok=True)
    r = run_child([str(binary), "import", "--store", str(store), "--quiet", str(source)], measure_rss=True)
    if not r.ok:
        sys.exit(f"error: persona import failed: {r.error()}")
    (store.parent / "store.done").write_text(
        json.dumps({"persona": str(binary), "binary_mtime": binary.stat().st_mtime, "at": time.time()})
    )
    return r


def duckdb_load(source: Path, threads: int | None) -> tuple[ChildResult, dict]:
    r = run_child(
        [sys.executable, "-c", DUCKDB_LOAD_SCRIPT, str(source), ",".join(TABLES), str(threads or 0)], measure_rss=True
    )
    if not r.ok:
        raise RuntimeError(f"duckdb load failed: {r.error()}")
    return r, json.loads(r.stdout.strip().splitlines()[-1])


@dataclass
class QueryOutcome:
    name: str
    persona_process_ms: list[float] = field(default_factory=list)
    persona_inproc_ms: list[float] = field(default_factory=list)
    persona_noindex_ms: list[float] = field(default_factory=list)
    noindex_error: str | None = None
    machine_busy_before: bool = False
    duckdb_ms: list[float] = field(default_factory=list)
    persona_peak_rss_kib: int | None = None
    persona_peak_anon_kib: int | None = None
    # "ok" (same results on both engines), "mismatch" (both ran, results differ) or "failed"
    # (an engine failed). Only "ok" gets a ratio.
    status: str = "failed"
    check: str = ""
    # The cross-check of Persona with the indexes off against DuckDB, same form as `check`
    # ("" when --skip-noindex). It tells an index-path bug (indexes on differ, off agree) from a
    # difference in SQL semantics between DataFusion and DuckDB (both differ).
    noindex_check: str = ""
    is_copy: bool = False
    statement_count: int = 1
    errors: list[str] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        return self.status == "ok"


def run_query(
    q: str, sql_text: str, persona: Persona, con: Any, runs: int, scratch: Path, noindex: bool
) -> QueryOutcome:
    outcome = QueryOutcome(q)
    statements = split_statements(sql_text)
    is_copy = bool(COPY_MARKER.search(sql_text))
    outcome.is_copy, outcome.statement_count = is_copy, len(statements)
    if is_copy and len(statements) != 1:
        outcome.errors.append(f"{q} is run as COPY and must be one SELECT, found {len(statements)} statements")
        outcome.check = "failed: " + outcome.errors[-1]
        return outcome

    def persona_copy(target: Path) -> str:
        return f"COPY ({statements[0]}) TO {sql_str(target)}"

    def duckdb_copy(target: Path) -> str:
        return f"COPY ({statements[0]}) TO {sql_str(target)} (FORMAT PARQUET)"

    p_file = scratch / f"{q}-persona.parquet"
    d_file = scratch / f"{q}-duckdb.parquet"

    # --- Persona
    persona_results: list[Result] | None = None
    try:
        if is_copy:
            p_file.unlink(missing_ok=True)
            outcome.persona_process_ms, outcome.persona_peak_rss_kib, outcome.persona_peak_anon_kib = persona.per_process(
                q, [persona_copy(p_file)], runs
            )
            persona_results = [read_parquet_result(p_file)]
            outcome.persona_inproc_ms = persona.in_process(
                q, lambda k: [persona_copy(scratch / f"{q}-persona-inproc-{k}.parquet")], runs
            )
        else:
            persona_results = persona.check_results(q, statements)
            outcome.persona_process_ms, outcome.persona_peak_rss_kib, outcome.persona_peak_anon_kib = persona.per_process(
                q, statements, runs
            )
            outcome.persona_inproc_ms = persona.in_process(q, lambda k: statements, runs)
    except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
        outcome.errors.append(one_line(f"persona: {e}"))

    # --- Persona without its indexes: timed (informative, not in the ratios) and cross-checked
    noindex_results: list[Result] | None = None
    noindex_failure: str | None = None
    if noindex:
        try:
            if is_copy:
                n_file = scratch / f"{q}-persona-noindex-check.parquet"
                n_file.unlink(missing_ok=True)
                persona.check_copy(q, persona_copy(n_file), "--no-indexes")
                noindex_results = [read_parquet_result(n_file)]
            else:
                noindex_results = persona.check_results(q, statements, "--no-indexes")
        except Exception as e:  # noqa: BLE001
            noindex_failure = one_line(str(e))
    if noindex and not outcome.errors:
        try:
            if is_copy:
                make = lambda k: [persona_copy(scratch / f"{q}-persona-noindex-{k}.parquet")]  # noqa: E731
            else:
                make = lambda k: statements  # noqa: E731
            outcome.persona_noindex_ms = persona.in_process(q, make, runs, indexes=False)
        except Exception as e:  # noqa: BLE001
            outcome.noindex_error = one_line(str(e))

    # --- DuckDB on Parquet
    duck_results: list[Result] | None = None
    try:
        for k in range(runs + 1):
            results = []
            started = time.perf_counter()
            for stmt in statements:
                cur = con.execute(duckdb_copy(d_file) if is_copy else stmt)
                rows = cur.fetchall()
                cols = [d[0] for d in cur.description] if cur.description else []
                results.append((cols, rows))
            elapsed = (time.perf_counter() - started) * 1000
            if k > 0:
                outcome.duckdb_ms.append(elapsed)
        duck_results = [read_parquet_result(d_file)] if is_copy else [Result.of(c, r) for c, r in results]
    except Exception as e:  # noqa: BLE001
        outcome.errors.append(one_line(f"duckdb: {e}"))

    def against_duckdb(results: list[Result] | None) -> tuple[str, str]:
        """(status, detail) of Persona's results against DuckDB's."""
        if results is None or duck_results is None:
            return "failed", "no results"
        if is_copy:
            # The columns of DuckDB's file, i.e. of the SELECT (Q2: user_id, email).
            results = [project(results[0], duck_results[0].columns, "persona")]
        ok, detail = compare_results(results, duck_results)
        return ("ok" if ok else "mismatch"), detail

    # --- cross-check
    if outcome.errors:
        outcome.status = "failed"
        outcome.check = "failed: " + "; ".join(outcome.errors)
    else:
        outcome.status, detail = against_duckdb(persona_results)
        outcome.check = f"{outcome.status}: {detail}"
    if noindex:
        if noindex_failure is not None:
            outcome.noindex_check = f"failed: {noindex_failure}"
        elif duck_results is not None:
            status, detail = against_duckdb(noindex_results)
            outcome.noindex_check = f"{status}: {detail}"
        else:
            outcome.noindex_check = "not checked: DuckDB failed"
    return outcome


def diagnosis(o: QueryOutcome) -> str:
    """What a failed or mismatching query points at, from the indexes-off cross-check."""
    if o.comparable or not o.noindex_check:
        return ""
    if o.errors and any(e.startswith("duckdb:") for e in o.errors):
        return "DuckDB rejects the query: make it portable"
    if o.noindex_check.startswith("ok"):
        return "the indexes-off path agrees with DuckDB: a Persona index-path bug"
    if o.noindex_check.startswith("mismatch"):
        return "the indexes-off path disagrees too: SQL semantics differ between DataFusion and DuckDB (or a general-path bug)"
    return "Persona fails with the indexes off too: make the query portable (or a general-path bug)"


def project(r: Result, cols: list[str], engine: str) -> Result:
    """The columns `cols` of a result (a file without them keeps its own columns, so that the
    comparison reports the difference)."""
    if any(c not in r.columns for c in cols):
        log(f"warning: the {engine} COPY file has columns {r.columns}, expected {cols}")
        return r
    return Result(cols, r.reordered(cols))


# ----------------------------------------------------------------------------------------------
# report


def ratio(d: float | None, p: float | None) -> str:
    if d is None or p is None or p <= 0:
        return "–"
    return f"{d / p:.2f}×"


def short_check(o: QueryOutcome) -> str:
    busy = " (machine busy †)" if o.machine_busy_before else ""
    off = ""
    if o.noindex_check and not o.noindex_check.startswith("ok"):
        off = "; indexes off: " + o.noindex_check.split(":", 1)[0]
    elif o.noindex_check and not o.comparable:
        off = "; indexes off: ok"
    if o.comparable:
        return "ok" + off + busy
    text = o.check
    return (text if len(text) <= 70 else text[:67] + "...") + off + busy


def copy_note(outcomes: list[QueryOutcome], duckdb: bool) -> str:
    names = [o.name.upper() for o in outcomes if o.is_copy]
    if not names:
        return ""
    suffix = " (FORMAT PARQUET)" if duckdb else ""
    return f"{', '.join(names)}: COPY ... TO 'f.parquet'{suffix}"


def statements_note(outcomes: list[QueryOutcome]) -> str:
    multi = [o for o in outcomes if o.statement_count > 1]
    return "; ".join(f"{o.name.upper()}: its {o.statement_count} statements summed" for o in multi)


def render(outcomes: list[QueryOutcome], import_info: dict | None, ctx: dict) -> str:
    lines = []
    lines.append(
        f"Persona vs DuckDB — queries {ctx['query_set']} ({ctx['query_dir']}), {ctx['users']:,} users, seed {ctx['seed']}, {ctx['runs']} timed runs after a warm-up, "
        f"medians; {ctx['cpu_count']} CPUs ({ctx['cpu_model']}); {ctx['persona_version']} "
        f"({ctx['git_sha'][:12]}), duckdb {ctx['duckdb_version']}; {ctx['date']}"
    )
    lines.append("")
    if import_info:
        imp = import_info
        lines.append("| import | seconds | peak RSS | note |")
        lines.append("|---|---:|---:|---|")
        lines.append(
            f"| persona import (Parquet → store) | {imp['persona_seconds']:.2f} | {fmt_mib(imp['persona_peak_rss_kib'])} | "
            "wall time and peak RSS of the `persona import` process"
            + (" (machine busy †)" if imp.get("machine_busy_before") else "")
            + " |"
        )
        if imp.get("duckdb_seconds") is not None:
            lines.append(
                f"| DuckDB load into memory (CREATE TABLE AS read_parquet, 6 tables) | {imp['duckdb_seconds']:.2f} | "
                f"{fmt_mib(imp['duckdb_peak_rss_kib'])} | peak RSS of the loading Python+DuckDB process; "
                f"RSS grew {fmt_mib(imp['duckdb_rss_delta_kib'])} during the load"
                + (" (machine busy †)" if imp.get("duckdb_machine_busy_before") else "")
                + " |"
            )
            lines.append(
                f"| ratio persona / DuckDB | {imp['persona_seconds'] / imp['duckdb_seconds']:.2f}× | | "
                "target ≤ 2× (with every index built) |"
            )
        elif imp.get("duckdb_error"):
            lines.append(f"| DuckDB load | incomparable | | {imp['duckdb_error']} |")
        lines.append("")
    lines.append(
        "| query | persona ms (process) | persona ms (in-process) | persona ms (in-process, indexes off) | "
        "DuckDB ms (on Parquet) | ratio DuckDB/persona in-process | ratio DuckDB/persona process | "
        "persona peak RSS | persona peak anonymous RSS | check |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for o in outcomes:
        pp, pi, dd = median(o.persona_process_ms), median(o.persona_inproc_ms), median(o.duckdb_ms)
        pn = "failed" if o.noindex_error else fmt_ms(median(o.persona_noindex_ms))
        if o.comparable:
            r1, r2 = ratio(dd, pi), ratio(dd, pp)
        else:
            r1 = r2 = o.status  # "mismatch" or "failed": never a number
        lines.append(
            f"| {o.name.upper()} | {fmt_ms(pp)} | {fmt_ms(pi)} | {pn} | {fmt_ms(dd)} | {r1} | {r2} | "
            f"{fmt_mib(o.persona_peak_rss_kib)} | {fmt_mib(o.persona_peak_anon_kib)} | {short_check(o)} |"
        )
    lines.append("")
    lines.append(
        "persona ms (process): wall time of a fresh `persona sql` process per run — includes process start, "
        "opening the store, planning, executing and writing the result (to /dev/null)."
    )
    lines.append(
        "persona ms (in-process): the same statements repeated in ONE `persona sql --timing` process; "
        "per-statement plan + execute + write time in a warm session"
        + (f" ({statements_note(outcomes)})." if statements_note(outcomes) else ".")
    )
    lines.append(
        "persona ms (in-process, indexes off): the same after `SET persona.use_indexes = false` — "
        "DataFusion's general path over the store's Parquet files (not in the ratios; its results are cross-checked "
        "with DuckDB's too, see checks)."
    )
    lines.append(
        "DuckDB ms: one in-memory connection in this Python process with views over the same Parquet files; "
        "`execute().fetchall()`"
        + (
            f" ({'; '.join(x for x in [copy_note(outcomes, True), statements_note(outcomes)] if x)})."
            if copy_note(outcomes, True) or statements_note(outcomes)
            else "."
        )
    )
    lines.append(
        "ratio: DuckDB median / Persona median = how many times faster Persona is (> 1: Persona faster); "
        "`mismatch` (both engines ran, results differ) and `failed` (an engine failed) get no ratio."
    )
    lines.append(f"peak RSS: {RSS_METHOD}; for a query, of its warm-up `persona sql` process.")
    lines.append(
        "peak anonymous RSS: the highest RssAnon sampled every 10 ms in /proc (what the process allocated; "
        "peak RSS adds the pages of mapped store files it touched, which the page cache holds and shares)."
    )
    if any(o.machine_busy_before for o in outcomes) or (
        import_info and (import_info.get("machine_busy_before") or import_info.get("duckdb_machine_busy_before"))
    ):
        lines.append(
            f"†: other processes kept the CPUs busy for the whole --wait-idle {ctx['args']['wait_idle']:g} s before "
            "this step; its figures may be disturbed."
        )
    details = [o for o in outcomes if o.check]
    if details:
        lines.append("")
        lines.append("checks:")
        for o in details:
            if o.noindex_check and o.noindex_check == o.check:
                lines.append(f"  {o.name.upper()}: {o.check} (indexes off: the same)")
            else:
                lines.append(f"  {o.name.upper()}: {o.check}")
                if o.noindex_check:
                    lines.append(f"  {o.name.upper()} (indexes off): {o.noindex_check}")
            if o.noindex_error:
                lines.append(f"  {o.name.upper()} (indexes off, timing): failed: {o.noindex_error}")
            if diagnosis(o):
                lines.append(f"  {o.name.upper()} → {diagnosis(o)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def discover_queries(query_dir: Path) -> list[str]:
    """The query names of a folder: its *.sql files without the suffix, in natural order (q2 before q10)."""

    def key(name: str) -> list:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    return sorted((f.stem for f in query_dir.glob("*.sql") if f.is_file()), key=lambda n: key(n.lower()))


def resolve_query(name: str, known: list[str]) -> str | None:
    """A --queries entry as a query name: exact (`q3`, `a05`), or a bare number (`3`, `5`) matched
    against the numbers of the known names (`q3`; `a05`)."""
    name = name.strip().lower()
    exact = [k for k in known if k.lower() == name]
    if exact:
        return exact[0]
    if name.isdigit():
        hits = [k for k in known if (m := re.fullmatch(r"[a-z_]*(\d+)", k.lower())) and int(m.group(1)) == int(name)]
        if len(hits) == 1:
            return hits[0]
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_work = (
        Path(os.environ["CARGO_TARGET_DIR"]) / "persona-bench"
        if os.environ.get("CARGO_TARGET_DIR")
        else Path.home() / ".cache" / "persona-bench"
    )
    ap = argparse.ArgumentParser(description="Persona vs DuckDB on the audience benchmark (same run, same files).")
    ap.add_argument("--users", type=int, default=1_000_000, help="number of users (default 1,000,000; 10,000,000 works)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    ap.add_argument("--work", type=Path, default=default_work, help=f"data and scratch directory (default {default_work})")
    ap.add_argument("--persona", help="the persona binary (default: the release build)")
    ap.add_argument(
        "--query-set",
        choices=sorted(QUERY_SETS),
        default=DEFAULT_QUERY_SET,
        help="which queries: core = benches/queries/ (q1..q8, the default), audience = benches/queries-audience/ (a01..), "
        "probe = benches/queries-probe/ (p01..)",
    )
    ap.add_argument(
        "--queries", default=None, help="comma-separated names from the set, e.g. q1,q3,q6 or a01,a05 (default all)"
    )
    ap.add_argument(
        "--query-dir",
        type=Path,
        default=None,
        help="take the queries (every *.sql file) from this folder instead of the query set's own",
    )
    ap.add_argument("--json", type=Path, help="also write the results with their context to this file")
    ap.add_argument("--skip-import", action="store_true", help="do not measure the import; reuse the store")
    ap.add_argument(
        "--skip-noindex",
        action="store_true",
        help="skip the extra in-process Persona run with SET persona.use_indexes = false",
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before the import and each query, wait up to SECONDS for the CPUs to be >= 90%% idle (shared machines)",
    )
    ap.add_argument("--duckdb-threads", type=int, default=None, help="DuckDB threads (default: DuckDB's own, = cores)")
    args = ap.parse_args(argv)
    if args.query_dir is None:
        args.query_dir = QUERY_SETS[args.query_set]
    known = discover_queries(args.query_dir)
    if not known:
        ap.error(f"no *.sql files in {args.query_dir}")
    if args.queries is None:
        qs = known
    else:
        qs = []
        for entry in args.queries.split(","):
            if not entry.strip():
                continue
            q = resolve_query(entry, known)
            if q is None:
                ap.error(
                    f"unknown query {entry.strip()!r} in {args.query_dir}; choose from {', '.join(known)} "
                    f"(or another --query-set: {', '.join(sorted(QUERY_SETS))})"
                )
            qs.append(q)
    args.queries = qs
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = find_persona(args.persona)
    warn_if_stale(binary)
    base = args.work.expanduser().resolve() / f"{args.users}-{args.seed}"
    scratch = base / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    ctx = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "persona_version": persona_version(binary),
        "persona_binary": str(binary),
        "duckdb_version": duckdb.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "mem_total_gib": mem_total_gib(),
        "users": args.users,
        "seed": args.seed,
        "runs": args.runs,
        "now": NOW,
        "query_set": args.query_set if args.query_dir == QUERY_SETS[args.query_set] else "custom",
        "query_dir": display_path(args.query_dir),
        "rss_method": RSS_METHOD,
        "loadavg_at_start": os.getloadavg(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    log(f"persona: {binary} ({ctx['persona_version']}); duckdb {duckdb.__version__}; work {base}")

    source, gen_seconds = generate(binary, base, args.users, args.seed)
    store = base / "store"
    import_info = None
    if not args.skip_import or not (store.is_dir() and (base / "store.done").exists()):
        busy_before_import = not wait_idle(args.wait_idle, "the import")
        log("import: persona import into a fresh store ...")
        r = import_store(binary, source, store)
        import_info = {
            "persona_seconds": r.seconds,
            "persona_peak_rss_kib": r.maxrss_kib,
            "persona_summary": r.stderr.strip(),
            "machine_busy_before": busy_before_import,
        }
        log(f"import: persona {r.seconds:.2f} s, peak RSS {fmt_mib(r.maxrss_kib)}")
        if args.skip_import:
            log("import: (the store was missing, so it was imported although --skip-import was given)")
        else:
            import_info["duckdb_machine_busy_before"] = not wait_idle(args.wait_idle, "the DuckDB load")
            log("import: DuckDB load into memory ...")
            try:
                dr, info = duckdb_load(source, args.duckdb_threads)
                import_info.update(
                    {
                        "duckdb_seconds": info["seconds"],
                        "duckdb_process_seconds": dr.seconds,
                        "duckdb_peak_rss_kib": dr.maxrss_kib,
                        "duckdb_rss_delta_kib": info["rss_after_kib"] - info["rss_before_kib"],
                        "duckdb_memory_bytes": info.get("duckdb_memory_bytes"),
                        "duckdb_rows": info["rows"],
                    }
                )
                log(f"import: DuckDB {info['seconds']:.2f} s, peak RSS {fmt_mib(dr.maxrss_kib)}")
            except Exception as e:  # noqa: BLE001
                import_info["duckdb_error"] = str(e)
                log(f"import: DuckDB load failed: {e}")
    else:
        try:
            marker = json.loads((base / "store.done").read_text())
            if marker.get("binary_mtime", 0) < binary.stat().st_mtime:
                log("warning: the store was imported by an older persona binary (--skip-import keeps it)")
        except (OSError, ValueError):
            pass
        log(f"import: skipped, reusing {store}")

    persona = Persona(binary, store, scratch)
    con = duckdb_connection(source, args.duckdb_threads)
    outcomes = []
    for q in args.queries:
        sql_text = (args.query_dir / f"{q}.sql").read_text()
        busy = not wait_idle(args.wait_idle, q)
        log(f"{q}: running ...")
        o = run_query(q, sql_text, persona, con, args.runs, scratch, not args.skip_noindex)
        o.machine_busy_before = busy
        log(
            f"{q}: persona {fmt_ms(median(o.persona_process_ms))} ms (process), "
            f"{fmt_ms(median(o.persona_inproc_ms))} ms (in-process), "
            f"{fmt_ms(median(o.persona_noindex_ms))} ms (in-process, indexes off); duckdb {fmt_ms(median(o.duckdb_ms))} ms; "
            f"{'ok' if o.comparable else o.check}"
            + (f"; indexes off: {o.noindex_check}" if o.noindex_check and not o.comparable else "")
        )
        outcomes.append(o)
    con.close()

    print(render(outcomes, import_info, ctx))

    if args.json:
        doc = {
            "context": ctx,
            "generate_seconds": gen_seconds,
            "import": import_info,
            "queries": [
                {
                    "query": o.name,
                    "persona_process_ms": o.persona_process_ms,
                    "persona_process_median_ms": median(o.persona_process_ms),
                    "persona_inprocess_ms": o.persona_inproc_ms,
                    "persona_inprocess_median_ms": median(o.persona_inproc_ms),
                    "persona_inprocess_noindex_ms": o.persona_noindex_ms,
                    "persona_inprocess_noindex_median_ms": median(o.persona_noindex_ms),
                    "persona_noindex_error": o.noindex_error,
                    "machine_busy_before": o.machine_busy_before,
                    "duckdb_ms": o.duckdb_ms,
                    "duckdb_median_ms": median(o.duckdb_ms),
                    "persona_peak_rss_kib": o.persona_peak_rss_kib,
                    "persona_peak_anon_kib": o.persona_peak_anon_kib,
                    "comparable": o.comparable,
                    "status": o.status,
                    "check": o.check,
                    "noindex_check": o.noindex_check,
                }
                for o in outcomes
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0 if all(o.comparable for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
