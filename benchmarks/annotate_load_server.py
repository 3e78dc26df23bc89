"""The server side of benchmarks/annotate_load.py: gunicorn started and stopped for the rounds,
and the CPU that it, this database's PostgreSQL backends, the client and the rest of the machine
use (from /proc), so that each round can say where its time went."""

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- gunicorn ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_start(args, env: dict, port: int, log_path: Path, token: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "feedback_site.wsgi",
        "--config",
        str(ROOT / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--error-logfile",
        str(log_path),
    ]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.worker_class:
        command += ["--worker-class", args.worker_class]
    if args.threads:
        command += ["--threads", str(args.threads)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    probe = (
        f"GET /api/v1/projects/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"gunicorn exited with status {server.returncode}; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(probe)
                if sock.recv(64).startswith(b"HTTP/1.1 200 "):
                    _wait_until_idle(server.pid, deadline)
                    return server
        except OSError:
            time.sleep(0.2)
    gunicorn_stop(server)
    sys.exit(f"gunicorn did not answer on port {port} within 30 s; see {log_path}")


def _wait_until_idle(pid: int, deadline: float) -> None:
    """One worker answering is not all of them booted: wait until the workers stop loading Django,
    so that their start-up CPU is not counted in the first round."""
    while time.monotonic() < deadline:
        before = sum(_proc_cpu_seconds(p) for p in [pid, *_children(pid)])
        time.sleep(0.5)
        if sum(_proc_cpu_seconds(p) for p in [pid, *_children(pid)]) - before < 0.05:
            return


def gunicorn_stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


# --- CPU accounting ------------------------------------------------------------------------------


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _children(pid: int) -> list[int]:
    pids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def _postgres_backends(database: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"postgres: ") and f" {database} ".encode() in cmdline:
                pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds used by the gunicorn workers and this database's PostgreSQL backends."""

    def __init__(self, server_pid: int, database: str):
        self.server_pid, self.database = server_pid, database

    def sample(self) -> dict[str, dict[int, float]]:
        workers = [self.server_pid] + _children(self.server_pid)
        return {
            "server": {pid: _proc_cpu_seconds(pid) for pid in workers},
            "postgres": {pid: _proc_cpu_seconds(pid) for pid in _postgres_backends(self.database)},
            "machine": {0: _machine_busy_seconds()},
        }

    @staticmethod
    def used(before: dict, after: dict) -> dict[str, float]:
        # A process started inside the window counts from zero.
        return {
            group: sum(seconds - before[group].get(pid, 0.0) for pid, seconds in after[group].items())
            for group in after
        }


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait since boot."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
