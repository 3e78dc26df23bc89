"""Export speed and memory at scale: 1,000,000 rankings in PostgreSQL, exported per kind and format.

    .venv/bin/python benchmarks/export_scale.py --rankings 1000000

Setup. The script owns its database (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/yushan_export_bench; it refuses a name without "bench"), drops
and recreates it, migrates, and writes the rows with set-based SQL (generate_series), since going
through the services would take hours and this measures the export, not the labeling: one
project with K = 4, --rankings / 2 ranking tasks each ranked by two of 100 annotators (so the
agreement code has overlap to chew on), groups with ties, ratings and a flag now and then, answer
ids that look like the platform's own (16 hex digits).

Measurement. Each export is `manage.py export_dataset` in its own process (exactly what a
researcher runs), so its peak resident memory (ru_maxrss from wait4) is the export's own. Rows/s
counts source rankings read per second of wall time; a preference export writes more rows
(every implied pair) than it reads. Exit status 1 if a target is missed: >= 50,000 rankings/s
and peak memory under 500 MB for every kind and format measured.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TARGET_ROWS_PER_S = 50_000
TARGET_PEAK_MB = 500

SEED_SQL = """
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
SELECT '!', false, 'bench' || u, '', '', '', false, true, now() FROM generate_series(1, 100) AS u;

INSERT INTO labeling_project (name, guidelines, k, overlap, lease_seconds, paused, deploy_threshold, created_at)
VALUES ('bench', 'Rank the answers.', 4, 2, 600, false, 0.55, now());

INSERT INTO labeling_prompt (project_id, messages, content_hash, source, created_at)
SELECT p.id,
       jsonb_build_array(
         jsonb_build_object('role', 'system', 'content', 'You are a helpful assistant.'),
         jsonb_build_object('role', 'user', 'content', 'Question number ' || i || ': what is the highest mountain in Taiwan, and how tall is it?')),
       md5(i::text), 'bench', now()
FROM generate_series(1, %(tasks)s) AS i, labeling_project p;

INSERT INTO labeling_task (project_id, prompt_id, kind, state, completions, created_at, completed_at)
SELECT project_id, id, 'ranking', 'completed', 2, now(), now() FROM labeling_prompt ORDER BY id;

INSERT INTO labeling_candidate (task_id, public_id, text, source, generation, created_at)
SELECT t.id, substr(md5(t.id || 'c' || j), 1, 16),
       'Answer ' || j || ' to task ' || t.id || ': Yushan (玉山) is the highest peak in Taiwan at 3,952 metres. '
       || repeat('It lies in the Central Mountain Range. ', 1 + j %% 3),
       'bench', '{}'::jsonb, now()
FROM labeling_task t, generate_series(1, 4) AS j;

INSERT INTO labeling_assignment (task_id, annotator_id, state, leased_at, lease_expires_at, finished_at,
                                 candidate_order, draft_text, skip_reason)
SELECT t.id, u.id, 'submitted', now(), now(), now(), '[]'::jsonb, '', ''
FROM labeling_task t
JOIN LATERAL (SELECT id FROM auth_user WHERE username IN ('bench' || (1 + t.id %% 100), 'bench' || (1 + (t.id + 37) %% 100))) u ON true;

INSERT INTO labeling_ranking (assignment_id, task_id, annotator_id, groups, ratings, flags, none_acceptable,
                              client_id, created_at, updated_at)
SELECT a.id, a.task_id, a.annotator_id,
       CASE (a.id %% 3)
         WHEN 0 THEN jsonb_build_array(jsonb_build_array(c1), jsonb_build_array(c2), jsonb_build_array(c3), jsonb_build_array(c4))
         WHEN 1 THEN jsonb_build_array(jsonb_build_array(c2), jsonb_build_array(c1, c3), jsonb_build_array(c4))
         ELSE jsonb_build_array(jsonb_build_array(c1), jsonb_build_array(c3), jsonb_build_array(c2, c4)) END,
       jsonb_build_object(c1, 6, c4, 2),
       CASE WHEN a.id %% 10 = 0 THEN jsonb_build_object(c4, jsonb_build_array('factually_wrong')) ELSE '{}'::jsonb END,
       a.id %% 50 = 0, md5('ranking' || a.id)::uuid, now(), now()
FROM (SELECT a.id, a.task_id, a.annotator_id,
             substr(md5(a.task_id || 'c1'), 1, 16) AS c1, substr(md5(a.task_id || 'c2'), 1, 16) AS c2,
             substr(md5(a.task_id || 'c3'), 1, 16) AS c3, substr(md5(a.task_id || 'c4'), 1, 16) AS c4
      FROM labeling_assignment a) a;
ANALYZE;
"""


def database_reset(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    if "bench" not in name:
        sys.exit(f"refusing to drop {name!r}: the benchmark database name must contain 'bench'")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def seed(url: str, rankings: int) -> float:
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in SEED_SQL.split(";\n"):
            if statement.strip():
                connection.execute(statement, {"tasks": rankings // 2})
        count = connection.execute("SELECT count(*) FROM labeling_ranking").fetchone()[0]
    if count != rankings // 2 * 2:
        sys.exit(f"seeding made {count} rankings, expected {rankings // 2 * 2}")
    return time.perf_counter() - started


def export(url: str, kind: str, fmt: str, out: Path) -> tuple[float, float, str]:
    env = {**os.environ, "DATABASE_URL": url, "SNAPSHOT_STORE": str(out / "store")}
    command = [
        PYTHON,
        "manage.py",
        "export_dataset",
        "--project",
        "bench",
        "--kind",
        kind,
        "--format",
        fmt,
        "--out",
        str(out / f"{kind}.{fmt}"),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    output = process.stdout.read() + process.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"export {kind}/{fmt} failed:\n{output}")
    return elapsed, usage.ru_maxrss / 1024, output.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rankings", type=int, default=1_000_000)
    parser.add_argument("--kinds", default="ranking,preference,annotations")
    parser.add_argument("--formats", default="jsonl,parquet")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/yushan_export_bench"),
    )
    parser.add_argument("--keep", action="store_true", help="Reuse the seeded database if it has the rows.")
    args = parser.parse_args()

    if not args.keep:
        database_reset(args.database_url)
        print(f"seeded {args.rankings:,} rankings in {seed(args.database_url, args.rankings):.0f} s", flush=True)
    print(f"{'kind':<12} {'format':<8} {'seconds':>8} {'rankings/s':>11} {'peak MB':>8}  result")
    missed = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.kinds.split(","):
            for fmt in args.formats.split(","):
                elapsed, peak_mb, result = export(args.database_url, kind, fmt, Path(folder))
                rate = args.rankings / elapsed
                print(f"{kind:<12} {fmt:<8} {elapsed:8.1f} {rate:11,.0f} {peak_mb:8.0f}  {result[:90]}", flush=True)
                if rate < TARGET_ROWS_PER_S or peak_mb >= TARGET_PEAK_MB:
                    missed.append(f"{kind}/{fmt}")
                for path in Path(folder).glob("*.*"):
                    path.unlink()
    print(
        f"targets: >= {TARGET_ROWS_PER_S:,} rankings/s, peak < {TARGET_PEAK_MB} MB:",
        "met" if not missed else f"missed for {', '.join(missed)}",
    )
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
