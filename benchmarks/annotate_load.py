"""Load test: N annotators loop next-task → submit against gunicorn + PostgreSQL.

    .venv/bin/python benchmarks/annotate_load.py --annotators 1,8,32 --seconds 20

For each N it measures loops per second and the latency of each request, then checks in the
database that the load broke nothing. Exits 1 if a check fails or the run could not be measured.

Setup. The script owns its database (DATABASE_URL, default postgres://…/yushan_bench): it drops
and recreates it (it refuses a name without "bench" in it), migrates, and seeds one project per N
through the services (prompt_create, ranking_task_create): --tasks tasks, half demonstrations and
half ranking tasks over K=4 answers, overlap 3 so that several annotators share each task. Each
round has its own project and N fresh annotators with API tokens, so rounds do not interfere.

Server. It starts gunicorn with the repository's gunicorn.conf.py on a free port, with DEBUG=0
(so no query log and no browsable API) and a throwaway SECRET_KEY, and stops it after the rounds.
--workers, --threads and --worker-class override the config file to compare setups.

Client. One process, one asyncio event loop, one keep-alive connection per annotator, HTTP/1.1
written by hand on asyncio streams: an http.client thread per annotator or httpx would spend
CPU that the server needs on a 2-core machine. The client's CPU is measured and printed. One
loop is GET /api/v1/tasks/next/?project=ID, then POST the demonstration (some text) or the
ranking (a full shuffled ranking with ratings) with a fresh client_id. A request whose
connection drops is retried on a new connection; that is safe because next-task gives back the
lease one already holds and a submission with the same client_id is replayed, not stored twice.
The first --warmup seconds are not counted; a loop counts if it ends inside the timed window.

Checks, after gunicorn has stopped, per project:
  * no task has more submissions (demonstrations + rankings) than the project's overlap, each
    from a different annotator; Task.completions equals that count; a task is completed exactly
    when its count reached the overlap; every submitted assignment has its one submission;
  * every submission the client saw accepted (201) is in the database with its client_id, task
    and annotator, and the database has no submission the client did not see accepted;
  * no response was a 5xx or otherwise unexpected, and no annotator ran out of tasks (a 204)
    inside the timed window, which would make the figures meaningless (raise --tasks).

Columns: loops/s; p50/p99 of the whole loop and of each request in ms; errors (unexpected
statuses and dropped connections); CPU used during the timed window, in % of one core for the
client, in ms per loop for the gunicorn workers and the PostgreSQL backends of this database, and
in % of one core for everything else on the machine ("others": figures taken while other work
runs are not comparable with figures from a quiet machine). "ceiling" is what the measured CPU per
loop (server + PostgreSQL + client) allows if all cores served this load alone: an estimate, not
a measurement, for comparing code changes on a busy machine. "spread" is how fairly the server
shares itself: the loops of the busiest annotator over those of the least served one (1.0 is even).

Beside this script: annotate_load_server.py (gunicorn, CPU accounting), annotate_load_checks.py
(the checks).
"""

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from annotate_load_checks import round_check
from annotate_load_server import CpuMeter, client_cpu_seconds, free_port, gunicorn_start, gunicorn_stop

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/yushan_bench"
DEMONSTRATION_TEXT = "玉山主峰海拔 3,952 公尺，是台灣最高的山。" * 8


# --- database and seed ---------------------------------------------------------------------


def database_recreate(url: str) -> None:
    """Drop and create the benchmark's own database (only one whose name says it is a bench)."""
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlparse(url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"Refusing to recreate database {name!r}: its name must contain 'bench'.")
    admin_url = urllib.parse.urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def django_setup(database_url: str) -> dict:
    """Configure this process (and return the environment for gunicorn) for DEBUG=0 on the bench DB."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="feedback_site.settings",
        DATABASE_URL=database_url,
        DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        LOG_LEVEL="ERROR",  # 4xx are counted by the client, not logged
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return env


@dataclass
class Round:
    annotators: int
    project_id: int
    users: list[tuple[int, str]]  # (user id, API token)
    overlap: int
    stats: "Stats | None" = None
    problems: list[str] = field(default_factory=list)


def round_seed(*, tag: str, annotators: int, tasks: int, overlap: int) -> Round:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from rest_framework.authtoken.models import Token

    from labeling import roles, services
    from labeling.models import Project

    with transaction.atomic():
        project = Project.objects.create(name=f"bench {tag} N={annotators}", k=4, overlap=overlap, lease_seconds=600)
        for i in range(tasks):
            text = f"Bench prompt {i} of round N={annotators}: describe mountain number {i}."
            if i % 2 == 0:
                services.prompt_create(project=project, messages=text, source="bench")
            else:
                prompt, _ = services.prompt_create(
                    project=project, messages=text, source="bench", demonstration_task=False
                )
                answers = [{"text": f"Answer {j} to prompt {i}.", "source": "bench"} for j in range(project.k)]
                services.ranking_task_create(prompt=prompt, answers=answers)
        users = []
        for i in range(annotators):
            user = get_user_model().objects.create_user(username=f"bench-{tag}-{annotators}-{i}")
            roles.role_grant(user=user, role=roles.ANNOTATOR)
            users.append((user.pk, Token.objects.create(user=user).key))
    return Round(annotators=annotators, project_id=project.pk, users=users, overlap=overlap)


# --- the client ----------------------------------------------------------------------------------


class Dropped(Exception):
    """The connection closed before a whole response arrived."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.auth = f"Authorization: Token {token}\r\n"
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.auth}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            headers = raw.lower()
            match = re.search(rb"\r\ncontent-length: *(\d+)", headers)
            payload = await self.reader.readexactly(int(match.group(1))) if match else b""
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.close()
            raise Dropped() from error
        if b"\r\nconnection: close" in headers:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Stats:
    loops: list[tuple[float, float, float, float, int]] = field(default_factory=list)  # end, loop, next, submit, user
    accepted: list[tuple[str, str, int, int]] = field(default_factory=list)  # kind, client_id, task, user
    statuses: Counter = field(default_factory=Counter)  # unexpected "GET 500", "POST 409"…
    dropped: int = 0
    ran_dry: list[float] = field(default_factory=list)  # when an annotator got a 204
    window: tuple[float, float] = (0.0, 0.0)
    client_cpu: float = 0.0
    cpu: dict = field(default_factory=dict)


def submission_body(task: dict) -> tuple[str, dict]:
    client_id = str(uuid.uuid4())
    if task["kind"] == "ranking":
        ids = [candidate["id"] for candidate in task["candidates"]]
        random.shuffle(ids)
        body = {
            "ranking": [[i] for i in ids],
            "ratings": {i: random.randint(1, 7) for i in ids},
            "client_id": client_id,
        }
        return "ranking", body
    return "demonstration", {"text": DEMONSTRATION_TEXT, "client_id": client_id}


async def request_retrying(conn: HttpConnection, stats: Stats, method: str, path: str, body: bytes = b""):
    for _ in range(3):
        try:
            return await conn.request(method, path, body)
        except Dropped:
            stats.dropped += 1
    raise RuntimeError(f"{method} {path}: the connection dropped three times in a row")


async def annotator_loop(port: int, project_id: int, user: tuple[int, str], stats: Stats, stop_at: float):
    user_id, token = user
    conn = HttpConnection(port, token)
    next_path = f"/api/v1/tasks/next/?project={project_id}"
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            status, payload = await request_retrying(conn, stats, "GET", next_path)
            leased = time.perf_counter()
            if status == 204:
                stats.ran_dry.append(leased)
                return
            if status != 200:
                stats.statuses[f"GET {status}"] += 1
                await asyncio.sleep(0.05)
                continue
            task = json.loads(payload)
            kind, body = submission_body(task)
            path = f"/api/v1/tasks/{task['id']}/{kind}/"
            status, payload = await request_retrying(conn, stats, "POST", path, json.dumps(body).encode())
            done = time.perf_counter()
            if status == 201:
                stats.accepted.append((kind, body["client_id"], task["id"], user_id))
                stats.loops.append((done, done - started, leased - started, done - leased, user_id))
            else:
                stats.statuses[f"POST {status}"] += 1
    finally:
        conn.close()


async def load_run(port: int, round_: Round, *, warmup: float, seconds: float, meter: CpuMeter) -> Stats:
    stats = Stats()
    start = time.perf_counter()
    window = (start + warmup, start + warmup + seconds)
    stats.window = window
    runners = [
        asyncio.create_task(annotator_loop(port, round_.project_id, user, stats, window[1])) for user in round_.users
    ]
    await asyncio.sleep(warmup)
    cpu_before, client_before = meter.sample(), client_cpu_seconds()
    await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
    stats.cpu = CpuMeter.used(cpu_before, meter.sample())
    stats.client_cpu = client_cpu_seconds() - client_before
    await asyncio.gather(*runners)
    return stats


# --- report ------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report_table(rounds: list[Round], seconds: float) -> str:
    header = (
        f"{'N':>3} {'loops/s':>8} {'loop p50':>9} {'loop p99':>9} {'next p50':>9} {'next p99':>9} "
        f"{'subm p50':>9} {'subm p99':>9} {'errors':>6} {'client':>7} {'server':>8} {'postgres':>9} {'others':>7} {'ceiling':>8} {'spread':>6}  integrity"
    )
    units = (
        f"{'':>3} {'':>8} {'ms':>9} {'ms':>9} {'ms':>9} {'ms':>9} {'ms':>9} {'ms':>9} {'':>6} "
        f"{'% core':>7} {'ms/loop':>8} {'ms/loop':>9} {'% core':>7} {'loops/s':>8} {'max/min':>6}"
    )
    lines = [header, units]
    for r in rounds:
        s = r.stats
        timed = [loop for loop in s.loops if s.window[0] <= loop[0] <= s.window[1]]
        n = len(timed)

        def ms(index, q, timed=timed):
            return percentile([loop[index] for loop in timed], q) * 1000

        per_loop = 1000 / n if n else float("nan")
        others = s.cpu["machine"] - s.cpu["server"] - s.cpu["postgres"] - s.client_cpu
        ceiling = (os.cpu_count() or 1) * n / max(s.cpu["server"] + s.cpu["postgres"] + s.client_cpu, 1e-9)
        per_user = Counter(loop[4] for loop in timed)
        counts = [per_user.get(user_id, 0) for user_id, _ in r.users]
        spread = max(counts) / max(min(counts), 1)
        lines.append(
            f"{r.annotators:>3} {n / seconds:>8.1f} {ms(1, 0.5):>9.1f} {ms(1, 0.99):>9.1f} {ms(2, 0.5):>9.1f} "
            f"{ms(2, 0.99):>9.1f} {ms(3, 0.5):>9.1f} {ms(3, 0.99):>9.1f} {sum(s.statuses.values()) + s.dropped:>6} "
            f"{100 * s.client_cpu / seconds:>7.1f} {s.cpu['server'] * per_loop:>8.2f} "
            f"{s.cpu['postgres'] * per_loop:>9.2f} {100 * others / seconds:>7.0f} {ceiling:>8.0f} {spread:>6.1f}  {'ok' if not r.problems else 'FAILED'}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", default="1,8,32", help="comma-separated N, one round each (default 1,8,32)")
    parser.add_argument("--seconds", type=float, default=20, help="timed window per round (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="untimed seconds before each window (default 3)")
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per round's project (default 5000)")
    parser.add_argument("--overlap", type=int, default=3, help="annotators per task (default 3)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker (default: gunicorn.conf.py)")
    parser.add_argument("--worker-class", help="gunicorn worker class, e.g. sync or gthread")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args()
    sizes = [int(n) for n in args.annotators.split(",")]

    started = time.monotonic()
    database_recreate(args.database_url)
    env = django_setup(args.database_url)
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    tag = time.strftime("%H%M%S")
    rounds = [round_seed(tag=tag, annotators=n, tasks=args.tasks, overlap=args.overlap) for n in sizes]
    with connections["default"].cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # as autovacuum would soon after an import, not during round 1
    connections.close_all()  # hold no connection or lock while the server runs
    print(f"Seeded {len(rounds)} projects of {args.tasks} tasks in {time.monotonic() - started:.0f} s.", flush=True)

    port = free_port()
    log_path = ROOT / "var" / "bench-gunicorn.log"
    server = gunicorn_start(args, env, port, log_path, rounds[0].users[0][1])
    meter = CpuMeter(server.pid, urllib.parse.urlparse(args.database_url).path.lstrip("/"))
    try:
        for r in rounds:
            r.stats = asyncio.run(load_run(port, r, warmup=args.warmup, seconds=args.seconds, meter=meter))
            print(f"  N={r.annotators}: {len(r.stats.loops)} loops", flush=True)
    finally:
        gunicorn_stop(server)

    for r in rounds:
        r.problems = round_check(r)
    print()
    print(report_table(rounds, args.seconds))
    failed = False
    for r in rounds:
        for problem in r.problems:
            print(f"N={r.annotators}: {problem}")
            failed = True
    if not failed:
        print(
            "Integrity: every task within its overlap, completions consistent, "
            f"all {sum(len(r.stats.accepted) for r in rounds)} accepted submissions stored, no 5xx."
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
