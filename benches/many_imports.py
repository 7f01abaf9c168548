#!/usr/bin/env python3
"""Many small imports against one: issue 17's compaction benchmark.

Builds two stores from the same generated data (`persona gen --seed 42`):
  - single: every table imported at once;
  - many:   the dimensions (users, products, channels) at once, then the facts (purchases, events,
            user_tags) in --imports small imports, in time order (as hourly loads arrive), with
            the importer's automatic compaction on, and `persona compact` at the end.
Then times Q1-Q8 (benches/queries) on both in one warm `persona sql --timing` process each (one
warm-up, --runs timed repetitions, medians) and prints the ratio many/single per query, the
import and compaction times, and the files each store ends with. Needs DuckDB's Python package
(`pip install duckdb`) to split the fact files.

    python3 benches/many_imports.py --users 1000000 --imports 1000 --work /tmp/many \\
        --persona target/release/persona
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

DIMENSIONS = ["users", "products", "channels"]
# Fact tables and the column their rows arrive in order of.
FACTS = {"purchases": "ts", "events": "ts", "user_tags": "assigned_at"}
QUERIES = Path(__file__).resolve().parent / "queries"
# Imports between two `persona vacuum --keep-versions 2` (each version writes a whole index file:
# at 1 M users ~70 MB, so 1,000 versions kept would take ~70 GB).
VACUUM_EVERY = 25


def run(cmd: list[str]) -> float:
    """Runs a command, exits with its error on failure; wall seconds."""
    started = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed: {r.stderr.strip() or r.stdout.strip()}")
    return time.perf_counter() - started


def split_facts(source: Path, parts: Path, imports: int) -> None:
    """Writes parts/NNNNN/<table>/part.parquet: each fact table cut into `imports` slices of
    consecutive rows in arrival order."""
    import duckdb

    con = duckdb.connect()
    for table, order in FACTS.items():
        files = f"{source / table}/*.parquet"
        con.execute(
            f"CREATE OR REPLACE TABLE t AS SELECT *, ntile({imports}) OVER (ORDER BY {order}) - 1 AS __part "
            f"FROM read_parquet('{files}')"
        )
        for i in range(imports):
            out = parts / f"{i:05}" / table
            out.mkdir(parents=True, exist_ok=True)
            con.execute(
                f"COPY (SELECT * EXCLUDE (__part) FROM t WHERE __part = {i}) TO '{out / 'part.parquet'}' (FORMAT PARQUET)"
            )
        con.execute("DROP TABLE t")


def statements(q: Path) -> list[str]:
    text = "\n".join(line for line in q.read_text().splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def time_queries(persona: str, store: Path, runs: int, scratch: Path) -> dict[str, float]:
    """Median ms per query (its statements summed) over `runs` repetitions after one warm-up."""
    out = {}
    for q in sorted(QUERIES.glob("q*.sql")):
        stmts = statements(q)
        f = scratch / f"{store.name}-{q.stem}.sql"
        f.write_text("".join(s + ";\n" for _ in range(runs + 1) for s in stmts))
        r = subprocess.run(
            [persona, "sql", "--store", str(store), "--timing", "--format", "csv", "--output", "/dev/null", "-f", str(f)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            sys.exit(f"error: {q.stem} on {store}: {r.stderr.strip()}")
        ms = [float(m) for m in re.findall(r"in ([0-9.]+) ms", r.stderr + r.stdout)]
        if len(ms) != len(stmts) * (runs + 1):
            sys.exit(f"error: {q.stem}: expected {len(stmts) * (runs + 1)} timings, found {len(ms)}")
        reps = [sum(ms[k * len(stmts) : (k + 1) * len(stmts)]) for k in range(1, runs + 1)]
        out[q.stem.upper()] = statistics.median(reps)
    return out


def data_files(store: Path) -> int:
    return sum(1 for _ in (store / "data").rglob("*.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--imports", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--persona", default="target/release/persona")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    source, parts = work / "source", work / "parts"
    single, many, scratch = work / "single", work / "many", work / "scratch"
    scratch.mkdir(exist_ok=True)

    if not (source / "users").is_dir():
        print(f"gen {args.users:,} users ...", flush=True)
        run([args.persona, "gen", "--users", str(args.users), "--seed", "42", "--out", str(source), "--format", "parquet", "--quiet"])
    if not single.is_dir():
        tables = [str(source / t) for t in [*DIMENSIONS, *FACTS]]
        seconds = run([args.persona, "import", "--store", str(single), "--quiet", *tables])
        print(f"single store: one import in {seconds:.1f} s", flush=True)
    if not parts.is_dir():
        print(f"splitting the facts into {args.imports} imports ...", flush=True)
        split_facts(source, parts, args.imports)
    if not many.is_dir():
        dims = run([args.persona, "import", "--store", str(many), "--quiet", *(str(source / t) for t in DIMENSIONS)])
        seconds = []
        for i, part in enumerate(sorted(parts.iterdir())):
            seconds.append(run([args.persona, "import", "--store", str(many), "--quiet", str(part)]))
            # Every import is a version with its own index file; a service vacuums on a schedule.
            if (i + 1) % VACUUM_EVERY == 0:
                run([args.persona, "vacuum", "--store", str(many), "--keep-versions", "2"])
            if (i + 1) % 100 == 0:
                print(f"  {i + 1} imports, median {statistics.median(seconds):.2f} s, {data_files(many)} data files", flush=True)
        print(
            f"many store: dimensions {dims:.1f} s; {len(seconds)} fact imports in {sum(seconds):.0f} s "
            f"(median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s, automatic compaction included)",
            flush=True,
        )
        run([args.persona, "vacuum", "--store", str(many), "--keep-versions", "1"])
        before = data_files(many)
        compact = run([args.persona, "compact", "--store", str(many)])
        run([args.persona, "vacuum", "--store", str(many), "--keep-versions", "1"])
        print(f"persona compact: {compact:.1f} s, data files {before} -> {data_files(many)}", flush=True)
    print(f"data files: single {data_files(single)}, many {data_files(many)} (old versions vacuumed)", flush=True)

    one = time_queries(args.persona, single, args.runs, scratch)
    other = time_queries(args.persona, many, args.runs, scratch)
    print("\n| query | single import ms | many imports + compact ms | ratio |")
    print("|---|---:|---:|---:|")
    for q in one:
        print(f"| {q} | {one[q]:.1f} | {other[q]:.1f} | {other[q] / one[q]:.2f}× |")


if __name__ == "__main__":
    main()
