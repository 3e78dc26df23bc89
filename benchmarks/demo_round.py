"""make run's demo round, timed from the click: does it beat the base policy and deploy itself?

    .venv/bin/python benchmarks/demo_round.py        # after `make install`; about 15 minutes on 2 cores

What it does: runs scripts/run.sh, which `make run` runs once the virtualenv is installed, with a
YUSHAN_VAR_DIR of its own in a temporary folder (nothing in var/ is touched): migrate, the demo
project, the base policy converted from the shipped GGUF, the first generation job, the web server
and the three workers. As soon as the script prints its URL, the admin starts a round with the
default settings (`POST /api/v1/rounds/`, what the Start button does) and the benchmark watches
the round until it deploys, waits for a decision or fails.

It prints how long the round waited before its first stage (the generation job that was running
pauses for it), each stage's time, the evaluation's judges with their 95% intervals, and the
outcome. Targets (PASS/FAIL, and the exit status): the round deploys itself, and its deploy stage
finishes within 15 minutes of the click. The JSON report goes to --out
(default benchmarks/results/demo_round.json).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.closed_loop_stack import Api, free_port, log, seconds_between  # noqa: E402

ADMIN = ("admin", "yushan-admin")  # seed_demo's admin
DEMO_PROJECT = "Yushan demo"
TARGET_MINUTES = 15
DONE = {"succeeded", "awaiting_decision", "failed", "cancelled"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo_round.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, models, logs)")
    return parser.parse_args(argv)


class MakeRun:
    """scripts/run.sh in a process group of its own, its var folder in `folder`."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.output = folder / "run.sh.log"
        env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "TORCH_CPU_THREADS")}
        env.update(
            YUSHAN_VAR_DIR=str(folder / "var"),
            PORT=str(self.port),
            BIN=str(Path(sys.executable).parent),
            CELERY_BROKER_URL="filesystem://",  # make run's own broker, whatever the caller's shell names
            CACHE_URL="",
            PYTHONUNBUFFERED="1",
        )
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                ["bash", "scripts/run.sh"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.base_url = f"http://127.0.0.1:{self.port}"

    def wait_until_running(self, seconds: float = 900) -> float:
        """Until run.sh has printed its URL and the web server answers; the seconds it took."""
        import requests

        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if self.process.poll() is not None:
                raise RuntimeError(f"scripts/run.sh stopped ({self.process.returncode}):\n{self.tail()}")
            if "Yushan is running at" in self.output.read_text(errors="replace"):
                try:
                    requests.get(self.base_url + "/accounts/login/", timeout=2)
                    return time.monotonic() - started
                except requests.ConnectionError:
                    pass
            time.sleep(1)
        raise RuntimeError(f"scripts/run.sh did not start within {seconds:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Ctrl-C's signal to the whole group; a worker still busy after 20 s is killed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def round_watch(admin: Api, round_id: int) -> tuple[dict, list[dict]]:
    """Poll the round until it is done; what the page said it waited for, when it changed."""
    said, shown, waits, clicked = None, None, [], time.monotonic()
    while True:
        data = admin.get(f"/api/v1/rounds/{round_id}/")
        if data["waiting_for"] and data["waiting_for"] != said:
            waits.append({"after_seconds": round(time.monotonic() - clicked, 1), "waiting_for": data["waiting_for"]})
            log(f"round page: {data['waiting_for']}")
        said = data["waiting_for"]
        running = next((s["name"] for s in data["stages"] if s["status"] == "running"), None)
        if data["status"] in DONE:
            return data, waits
        if running and running != shown:
            log(f"stage {running} running")
        shown = running
        time.sleep(5)


def report(data: dict, waits: list[dict], jobs: list[dict], startup_seconds: float) -> dict:
    stages = {
        s["name"]: {"status": s["status"], "seconds": seconds_between(s["started_at"], s["finished_at"])}
        for s in data["stages"]
    }
    first = min((s["started_at"] for s in data["stages"] if s["started_at"]), default=None)
    last = max((s["finished_at"] for s in data["stages"] if s["finished_at"]), default=None)
    evaluation = {key: value for key, value in (data["evaluation"] or {}).items() if key != "rows"}
    return {
        "startup_seconds": startup_seconds,
        "status": data["status"],
        "deployed": data["deployed"],
        "error": data["error"],
        "waited_before_first_stage_seconds": seconds_between(data["created_at"], first),
        "click_to_last_stage_seconds": seconds_between(data["created_at"], last),
        "stages": stages,
        "waits": waits,
        "evaluation": evaluation,
        "generation_jobs": [
            {key: job[key] for key in ("id", "model_version", "status", "tasks_created", "yielded_to_stage", "error")}
            for job in jobs
        ],
        "config": data["config"],
    }


def report_print(result: dict) -> list[tuple[str, bool, str]]:
    print(f"\nmake run's demo round (started {result['startup_seconds']:.0f} s after scripts/run.sh)")
    print(f"waited before its first stage: {result['waited_before_first_stage_seconds'] or 0:.0f} s")
    for name, stage in result["stages"].items():
        seconds = "-" if stage["seconds"] is None else f"{stage['seconds']:.0f} s"
        print(f"  {name:<9} {stage['status']:<10} {seconds:>7}")
    evaluation = result["evaluation"]
    for name, judge in evaluation.get("judges", {}).items():
        low, high = judge["win_rate_ci"]
        print(
            f"win rate under the {name}: {judge['win_rate']:.3f} [{low:.3f}, {high:.3f}] on {judge['prompts']} prompts"
        )
    for key in ("reward_model_accuracy", "implicit_reward_accuracy"):
        if key in evaluation:
            judged = evaluation[key]
            low, high = judged["accuracy_ci"]
            print(f"{key}: {judged['accuracy']:.3f} [{low:.3f}, {high:.3f}] on {judged['pairs']} held-out pairs")
    if "kl" in evaluation:
        print(
            f"KL {evaluation['kl']:.1f} nats per answer; mean length {evaluation['new_mean_length']:.1f} tokens "
            f"(deployed policy {evaluation['old_mean_length']:.1f})"
        )
    for job in result["generation_jobs"]:
        paused = ", paused for the round" if job["yielded_to_stage"] else ""
        print(f"generation job {job['id']} (version {job['model_version']}): {job['status']}{paused}")
    minutes = (result["click_to_last_stage_seconds"] or float("inf")) / 60
    targets = [
        ("the round deploys itself", bool(result["deployed"]), f"{result['status']}, deployed: {result['deployed']}"),
        (f"deployed within {TARGET_MINUTES} min of the click", minutes < TARGET_MINUTES, f"{minutes:.1f} min"),
    ]
    print()
    for name, passed, detail in targets:
        print(f"{'PASS' if passed else 'FAIL'}  {name} ({detail})")
    return targets


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="yushan-demo-round-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the finally below
    stack = MakeRun(folder)
    try:
        log(f"scripts/run.sh started, var folder {folder / 'var'}")
        startup = stack.wait_until_running()
        log(f"running at {stack.base_url} after {startup:.0f} s; starting a round with the default settings")
        admin = Api(stack.base_url, *ADMIN)
        project = next(p["id"] for p in admin.get("/api/v1/projects/") if p["name"] == DEMO_PROJECT)
        started = admin.post("/api/v1/rounds/", {"project": project}, expect=(202,))
        data, waits = round_watch(admin, started["id"])
        jobs = admin.get("/api/v1/generation-jobs/", params={"project": project})
        result = report(data, waits, jobs, startup)
    except Exception:
        print(f"--- scripts/run.sh output ---\n{stack.tail()}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    targets = report_print(result)
    result["targets"] = [{"name": n, "passed": p, "detail": d} for n, p, d in targets]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")
    log(f"report written to {args.out}")
    return 0 if all(passed for _, passed, _ in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
