#!/usr/bin/env python3
"""Persona vs DuckDB on exporting a saved audience, in one run (issue: audiences).

1. On a Persona store (e.g. the one `benches/compare.py` builds), saves the audience
   `SELECT user_id, phone, email FROM users WHERE <predicate>` (default: tier = 'gold', about
   1.1 M of 10 M users) with CREATE OR REPLACE AUDIENCE.
2. Times `MATERIALIZE AUDIENCE bench_export TO '<tmp>/persona.parquet'`: a warm-up + --runs
   statements in one `persona sql --timing` process (per-statement time), and one fresh process
   per run (wall time); then in one process again with `SET persona.export_compression = 'snappy'`
   (DuckDB's codec; Persona writes uncompressed by default).
3. Times DuckDB's `COPY (the same SELECT on read_parquet(<source>/users/*.parquet)) TO
   '<tmp>/duckdb.parquet' (FORMAT parquet)`, a warm-up + --runs, in this process.
4. Checks both files hold the same user_ids (count and digest of the sorted ids).
5. Times `audience_diff` between two versions of the audience (v1: the predicate, v2: the
   predicate minus the users with points in 15000..=15500, about 2 % of the gold tier: a daily
   change), in one process, a warm-up + --runs of each: counting the changes
   (`SELECT change, count(*) ... GROUP BY change`) and listing them with their user_ids.

Medians are printed, with the ratio DuckDB / Persona. Python 3.11 + duckdb (pip-installed on first
use). The store is changed (the audience and its versions are recorded); use a scratch store.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMING = re.compile(r"^(\d+) row\(s\) in ([0-9.]+) ms\s*$")
REPO = Path(__file__).resolve().parent.parent


def ensure_duckdb():
    try:
        import duckdb  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "duckdb"])
    import duckdb

    return duckdb


def persona_sql(binary: Path, store: Path, sql: str) -> list[float]:
    out = subprocess.run(
        [str(binary), "sql", "--store", str(store), "--timing", "--format", "csv", "-c", sql],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        sys.exit(f"persona failed: {out.stderr.strip()}\nSQL: {sql}")
    return [float(m.group(2)) for line in out.stderr.splitlines() if (m := TIMING.match(line))]


def ids_digest(duckdb, path: Path) -> tuple[int, str]:
    con = duckdb.connect()
    rows = con.execute(f"SELECT user_id FROM read_parquet('{path}') ORDER BY user_id").fetchall()
    h = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()[:16]
    return len(rows), h


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--source", type=Path, required=True, help="the Parquet folders the store was imported from")
    ap.add_argument("--persona", type=Path, default=REPO / "target" / "release" / "persona")
    ap.add_argument("--predicate", default="tier = 'gold'")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    duckdb = ensure_duckdb()
    select = f"SELECT user_id, phone, email FROM users WHERE {args.predicate}"
    persona_sql(args.persona, args.store, f"CREATE OR REPLACE AUDIENCE bench_export AS {select}")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "persona.parquet"
        stmt = f"MATERIALIZE AUDIENCE bench_export TO '{target}';"
        in_process = persona_sql(args.persona, args.store, stmt * (args.runs + 1))[1:]
        # The same with snappy, the codec of DuckDB's file (Persona's default is uncompressed).
        snappy = persona_sql(
            args.persona, args.store, "SET persona.export_compression = 'snappy';" + stmt * (args.runs + 1)
        )[2:]
        process = []
        for _ in range(args.runs + 1):
            t0 = time.perf_counter()
            persona_sql(args.persona, args.store, stmt)
            process.append((time.perf_counter() - t0) * 1000)
        process = process[1:]
        duck_target = Path(tmp) / "duckdb.parquet"
        con = duckdb.connect()
        users = f"read_parquet('{args.source}/users/*.parquet')"
        copy = (
            f"COPY ({select.replace('FROM users', f'FROM {users}')}) TO '{duck_target}' (FORMAT parquet)"
        )
        duck = []
        for _ in range(args.runs + 1):
            t0 = time.perf_counter()
            con.execute(copy)
            duck.append((time.perf_counter() - t0) * 1000)
        duck = duck[1:]
        p_check, d_check = ids_digest(duckdb, target), ids_digest(duckdb, duck_target)
    # Two versions of the audience for the diff.
    persona_sql(
        args.persona, args.store,
        f"CREATE OR REPLACE AUDIENCE bench_export AS {select} AND NOT (points BETWEEN 15000 AND 15500)",
    )
    out = subprocess.run(
        [str(args.persona), "sql", "--store", str(args.store), "--format", "csv", "-c",
         "SELECT max(version) AS v FROM audience_versions WHERE audience = 'bench_export'"],
        capture_output=True, text=True, check=True,
    )
    v2 = int(out.stdout.splitlines()[1])
    diff_sql = f"SELECT change, count(*) FROM audience_diff('bench_export', {v2 - 1}, {v2}) GROUP BY change;"
    diff = persona_sql(args.persona, args.store, diff_sql * (args.runs + 1))[1:]
    list_sql = f"SELECT user_id, change FROM audience_diff('bench_export', {v2 - 1}, {v2});"
    listing = persona_sql(args.persona, args.store, list_sql * (args.runs + 1))[1:]
    sizes = subprocess.run(
        [str(args.persona), "sql", "--store", str(args.store), "--format", "csv", "-c",
         f"SELECT version, members, added, removed FROM audience_versions WHERE audience = 'bench_export' AND version >= {v2 - 1} ORDER BY version"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    med = statistics.median
    print(f"audience: {select}")
    print(f"rows: persona {p_check[0]} ({p_check[1]}), duckdb {d_check[0]} ({d_check[1]}): "
          f"{'same user_ids' if p_check == d_check else 'MISMATCH'}")
    print(f"persona MATERIALIZE in-process: median {med(in_process):.1f} ms  {[round(x, 1) for x in in_process]}")
    print(f"persona MATERIALIZE process:    median {med(process):.1f} ms  {[round(x, 1) for x in process]}")
    print(f"persona MATERIALIZE in-process, snappy like DuckDB's file: median {med(snappy):.1f} ms  "
          f"{[round(x, 1) for x in snappy]}")
    print(f"duckdb COPY:                    median {med(duck):.1f} ms  {[round(x, 1) for x in duck]}")
    print(f"ratio duckdb/persona: in-process {med(duck) / med(in_process):.1f}x, process {med(duck) / med(process):.1f}x, "
          f"snappy in-process {med(duck) / med(snappy):.1f}x")
    print(f"versions compared by the diff:\n{sizes}")
    print(f"audience_diff counted, in-process: median {med(diff):.1f} ms  {[round(x, 1) for x in diff]}")
    print(f"audience_diff listed with user_ids, in-process: median {med(listing):.1f} ms  {[round(x, 1) for x in listing]}")
    return 0 if p_check == d_check else 1


if __name__ == "__main__":
    sys.exit(main())
