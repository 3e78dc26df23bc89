"""Closed-loop benchmark, AlpacaFarm-style: simulated teachers with a known rule, default rounds.

Does a training round with the default settings make the policy better by a rule we know, when
teachers label by that rule through the product, exactly as browser annotators would?

    .venv/bin/python benchmarks/closed_loop.py --rule concise     # or traditional, reference, explain, language
    .venv/bin/python benchmarks/closed_loop.py --rule concise --model /path/to/checkpoint --keep
    .venv/bin/python benchmarks/closed_loop.py --rule concise --config '{"policy": {"algorithm": "iterative_dpo"}}'

What it does, all in a throwaway Yushan (its own SQLite database, model store, filesystem broker
and logs in a temporary folder or --workdir, removed at the end unless --keep):

1. migrate; an admin and --teachers annotator accounts; the project (K = 4, overlap 1, half its
   prompts held out as the frozen evaluation split) through `POST /api/v1/projects/` (the ORM
   where the API cannot create projects); the 144
   prompts of benchmarks/closed_loop_prompts.jsonl (half 繁體中文, half English) with
   `import_prompts`; the base policy with `register_base_model --deploy` (the converted SmolLM2,
   or --model); then the web server and the two Celery workers of scripts/run.sh.
2. The deployed policy writes K answers per prompt (a generation job through the API). Simulated
   teachers (benchmarks/closed_loop_teachers.py) take tasks through `/api/v1/tasks/next/` until
   none is left: demonstrations are the bank's reference answers, rankings order the answers by
   the rule (`language`: share of letters in the prompt's script, Traditional over Simplified;
   `concise`: that times a length factor that wants answers shorter than the bank's own;
   `traditional`: the script share, less a quarter for each Simplified-only character;
   `reference`: the script share times SQuAD-style token F1 against the bank's answer;
   `explain`: finished answers of two or three sentences, longer than the bank's own),
   near-equal scores tied.
3. A round with the default settings (`POST /api/v1/rounds/`, no config) runs SFT → reward model
   → DPO → evaluation → deploy. A round left awaiting a decision is not deployed (the admin
   keeps the current policy). The deployed policy writes the next answers, the teachers label
   them, and the next round runs (--rounds, default 2).
4. With the stack stopped, the base policy and each round's policy answer every held-out prompt
   (no round trained on them) with the round evaluation's sampling (temperature 0.7, seed 0); the
   rule scores them: mean with a 95% bootstrap interval, and the paired per-prompt difference to
   the base with its interval, beside each round's own verdict (win rate, judge, deployed or
   not), KL, answer length and stage times. The table is also written as JSON (--out, default
   benchmarks/results/closed_loop_<rule>.json).

Targets (PASS/FAIL at the end): round 1 raises the rule score by at least +0.10 with the paired
interval above 0; round 2 scores above round 1, its paired interval above 0 too; each round's
own verdict (better / worse / no clear difference, from its deciding judge's win-rate interval
against the policy it started from) agrees with the rule's (from the paired interval on the same
pair); the whole run takes under 40 minutes.

A quick check of the plumbing with a tiny random model (the rule will not improve; ~30 min on 2 cores):

    .venv/bin/python -c "from training.ml import tiny; tiny.build_tiny_model('/tmp/cl/tiny')"
    GENERATION_MAX_NEW_TOKENS=64 .venv/bin/python benchmarks/closed_loop.py --rule concise \
        --model /tmp/cl/tiny --workdir /tmp/cl --out /tmp/cl/tiny.json

(Random weights: a 256-token answer nearly always holds broken UTF-8 and is drawn again or its
prompt skipped, hence the shorter answers; and under `language` all of a random model's answers
tie, so the reward model gets no ordered pair and the round fails at that stage.)
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.closed_loop_stack import (  # noqa: E402
    BANK,
    TEACHER_PASSWORD,
    Api,
    Stack,
    held_out_conversations,
    log,
    seconds_between,
    stack_prepare,
)
from benchmarks.closed_loop_teachers import (  # noqa: E402
    RULES,
    Teacher,
    bank_load,
    interval_text,
    labeling_pass,
    paired_difference,
    policies_score,
    targets_check,
)

ROUND_DONE = {"succeeded", "awaiting_decision", "failed", "cancelled"}
JOB_ACTIVE = {"queued", "running"}
POLL_SECONDS = 5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", choices=sorted(RULES), required=True, help="The teachers' preference rule.")
    parser.add_argument("--model", type=Path, help="Base checkpoint folder (default: the converted SmolLM2).")
    parser.add_argument("--teachers", type=int, default=2, help="Simulated annotators (default 2).")
    parser.add_argument("--rounds", type=int, default=2, help="Training rounds (default 2).")
    parser.add_argument("--workdir", type=Path, help="Folder for the stack (default: a new temporary one).")
    parser.add_argument("--keep", action="store_true", help="Keep the stack's folder (database, models, logs).")
    parser.add_argument("--out", type=Path, help="JSON report (default: benchmarks/results/closed_loop_<rule>.json).")
    parser.add_argument(
        "--config",
        type=json.loads,
        default=None,
        help='round settings over the defaults, as the API takes them, e.g. \'{"policy": {"algorithm": '
        '"iterative_dpo"}}\' (default: none; the targets are about the defaults)',
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads of the gpu worker (TORCH_CPU_THREADS; default: every core, as nobody labels while "
        "a round or a generation job runs here)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help="tokens per candidate answer (GENERATION_MAX_NEW_TOKENS; default 64: the bank's answers need "
        "at most about 45)",
    )
    args = parser.parse_args(argv)
    if min(args.teachers, args.rounds, args.threads, args.max_new_tokens) < 1:
        parser.error("--teachers, --rounds, --threads and --max-new-tokens must be at least 1")
    if args.model is not None and not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json there")
    args.model = args.model and args.model.resolve()  # manage.py runs from the repository root
    args.out = args.out or ROOT / "benchmarks" / "results" / f"closed_loop_{args.rule}.json"
    return args


# --- the loop ------------------------------------------------------------------------------------


def generation_wait(admin: Api, stack: Stack, project: int, seen: set[int]) -> list[dict]:
    """Wait until the project has no queued or running generation job; the jobs not seen before."""
    while True:
        jobs = admin.get("/api/v1/generation-jobs/", params={"project": project})
        active = [job for job in jobs if job["status"] in JOB_ACTIVE]
        if not active:
            break
        stack.check_alive()
        time.sleep(POLL_SECONDS)
    new = [job for job in sorted(jobs, key=lambda j: j["id"]) if job["id"] not in seen]
    for job in new:
        seen.add(job["id"])
        if job["status"] == "failed":
            raise RuntimeError(f"generation job {job['id']} failed: {job['error']}\n{stack.log_tail('gpu-worker')}")
        job["seconds"] = seconds_between(job["started_at"], job["finished_at"])
        log(
            f"generation job {job['id']} {job['status']}: {job['tasks_created']} ranking tasks from version "
            f"{job['model_version']}, {job['prompts_skipped']} prompts skipped, {job['seconds'] or 0:.0f} s"
        )
    return new


def generation_start(admin: Api, project: int) -> None:
    """A job from the deployed policy; 409 when one is already queued or running (it is waited for)."""
    admin.post("/api/v1/generation-jobs/", {"project": project}, expect=(201, 409))


def round_run(admin: Api, stack: Stack, project: int, config: dict | None = None) -> dict:
    """Start a round (the default settings, or `config` over them) and watch it until it ends or
    waits for a decision."""
    body = {"project": project} if config is None else {"project": project, "config": config}
    data = admin.post("/api/v1/rounds/", body, expect=(202,))
    log(
        f"round {data['number']} started (id {data['id']}), "
        + ("default settings" if config is None else f"settings {config}")
    )
    shown = None
    while data["status"] not in ROUND_DONE:
        time.sleep(POLL_SECONDS)
        stack.check_alive()
        data = admin.get(f"/api/v1/rounds/{data['id']}/")
        running = [s for s in data["stages"] if s["status"] == "running"]
        now = (data["status"], running[0]["name"] if running else None)
        if now != shown:
            shown = now
            log(f"round {data['number']}: {data['status']}" + (f", stage {now[1]}" if now[1] else ""))
    return round_summary(data)


def round_summary(data: dict) -> dict:
    evaluation = {key: value for key, value in (data.get("evaluation") or {}).items() if key != "rows"}
    stages = {
        s["name"]: {
            "status": s["status"],
            "seconds": seconds_between(s.get("started_at"), s.get("finished_at")),
            "error": s.get("error", ""),
        }
        for s in data["stages"]
    }
    last_finished = max((s["finished_at"] for s in data["stages"] if s.get("finished_at")), default=None)
    summary = {
        "id": data["id"],
        "number": data["number"],
        "status": data["status"],
        "deployed": bool(data.get("deployed")),
        "error": data.get("error", ""),
        # A round waiting for a decision has no finished_at yet: up to its last finished stage.
        "seconds": seconds_between(data.get("started_at"), data.get("finished_at") or last_finished),
        "base_policy": (data.get("base_policy") or {}).get("id"),
        "policy_version": (data.get("policy_version") or {}).get("id"),
        "evaluate_settings": (data.get("config") or {}).get("evaluate", {}),
        "evaluation": evaluation,
        "stages": stages,
    }
    log(
        f"round {summary['number']} {summary['status']}, deployed: {summary['deployed']}, "
        f"win rate {evaluation.get('win_rate', '?')} {evaluation.get('win_rate_ci', '')}"
    )
    if summary["status"] in ("failed", "cancelled"):
        log(f"round {summary['number']} error: {summary['error']}")
    return summary


def rounds_run(args, stack: Stack, setup: dict, teachers: list[Teacher]) -> dict:
    admin, project = setup["admin"], setup["project"]
    record = {"generation": [], "labeling": [], "rounds": []}
    seen: set[int] = set()
    generation_start(admin, project)
    record["generation"] += generation_wait(admin, stack, project, seen)
    record["labeling"].append(labeling_pass_logged(teachers))
    for number in range(1, args.rounds + 1):
        summary = round_run(admin, stack, project, args.config)
        record["rounds"].append(summary)
        if summary["status"] in ("failed", "cancelled") or number == args.rounds:
            break
        if summary["status"] == "awaiting_decision":  # the honest outcome: keep the current policy
            admin.post(f"/api/v1/rounds/{summary['id']}/decision/", {"deploy": False})
            log(f"round {number}: kept the deployed policy")
        if not summary["deployed"]:  # a deploy starts its own job; otherwise ask the still-deployed one
            generation_start(admin, project)
        record["generation"] += generation_wait(admin, stack, project, seen)
        record["labeling"].append(labeling_pass_logged(teachers))
    record["versions"] = admin.get("/api/v1/model-versions/", params={"project": project})
    return record


def labeling_pass_logged(teachers: list[Teacher]) -> dict:
    result = labeling_pass(teachers)
    log(f"labeling pass: {result['total']} in {result['seconds']:.0f} s")
    return result


# --- the report ----------------------------------------------------------------------------------


def _verdict(round_: dict | None) -> str:
    if round_ is None:
        return "-"
    evaluation = round_["evaluation"]
    if "win_rate" not in evaluation:
        return f"{round_['status']}: {round_['error'][:60]}"
    low, high = evaluation.get("win_rate_ci", [evaluation["win_rate"]] * 2)
    judge = evaluation.get("decided_by", "?")
    verdict = evaluation.get("judges", {}).get(judge, {}).get("verdict", "?")
    outcome = "deployed" if round_["deployed"] else f"{round_['status']}, not deployed"
    return f"win {evaluation['win_rate']:.2f} [{low:.2f}, {high:.2f}] {judge}: {verdict}; {outcome}"


def _round_of(record: dict, name: str) -> dict | None:
    return next((r for r in record["rounds"] if f"round {r['number']}" == name), None)


def _number(value, form: str = "{:.3f}") -> str:
    return form.format(value) if isinstance(value, int | float) else "-"


def _compact(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _compact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_compact(item) for item in value]
    return value


def table_print(record: dict) -> None:
    policies = record["scoring"]["policies"]
    args, setup = record["arguments"], record["setup"]
    print(
        f"\nClosed loop: rule {args['rule']!r}, model {args['model']}, {args['teachers']} teachers, "
        f"{setup['prompts']} prompts ({setup['held_out_prompts']} held out, all scored), "
        + ("default round settings" if args.get("config") is None else f"round settings {args['config']}")
    )
    print(
        f"{'policy':<8} {'rule score [95% CI]':<24} {'vs base (paired) [95% CI]':<27} {'KL':>7} {'tokens':>7}  round's own verdict"
    )
    for name, result in policies.items():
        round_ = _round_of(record, name)
        evaluation = round_["evaluation"] if round_ else {}
        versus = (
            "-"
            if name == "base"
            else interval_text(paired_difference(result["scores"], policies["base"]["scores"]), True)
        )
        print(
            f"{name:<8} {interval_text(result):<24} {versus:<27} {_number(evaluation.get('kl')):>7} "
            f"{result['mean_tokens']:>7.1f}  {_verdict(round_)}"
        )
    for round_ in record["rounds"]:
        if f"round {round_['number']}" not in policies:
            print(f"round {round_['number']:<2} no policy: {round_['status']}, {round_['error'][:100]}")
    stages = ["snapshot", "sft", "reward", "policy", "evaluate", "deploy"]
    print("\nstage wall time (s)  " + "".join(f"{s:>10}" for s in stages) + f"{'round':>10}")
    for round_ in record["rounds"]:
        times = [_number(round_["stages"].get(s, {}).get("seconds"), "{:.0f}") for s in stages]
        print(
            f"round {round_['number']:<15}"
            + "".join(f"{t:>10}" for t in times)
            + f"{_number(round_['seconds'], '{:.0f}'):>10}"
        )
    for job in record["generation"]:
        print(
            f"generation job {job['id']} (version {job['model_version']}): {job['tasks_created']} ranking tasks, "
            f"{_number(job['seconds'], '{:.0f}')} s"
        )
    for number, labeled in enumerate(record["labeling"], start=1):
        print(f"labeling pass {number}: {labeled['total']} in {labeled['seconds']:.0f} s")
    print("scoring: " + ", ".join(f"{name} {result['seconds']:.0f} s" for name, result in policies.items()))
    print(f"total wall time: {record['total_seconds'] / 60:.1f} min")


def report_print(record: dict) -> None:
    table_print(record)
    for round_ in record["rounds"]:
        print(f"\nround {round_['number']} evaluation:" + ("" if round_["evaluation"] else " none"))
        for key, value in round_["evaluation"].items():
            print(f"  {key}: {json.dumps(_compact(value), ensure_ascii=False)}")
    print()
    for target in record["targets"]:
        print(f"{'PASS' if target['passed'] else 'FAIL'}  {target['name']} ({target['detail']})")


def report_write(record: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")


# --- main ----------------------------------------------------------------------------------------


def workdir_make(args) -> tuple[Path, bool]:
    if args.workdir is None:
        return Path(tempfile.mkdtemp(prefix="yushan-closed-loop-")), True
    args.workdir.mkdir(parents=True, exist_ok=True)
    if (args.workdir / "stack").exists():
        sys.exit(f"{args.workdir / 'stack'} exists (an earlier --keep run?); remove it or choose another --workdir")
    return args.workdir.resolve(), False


def run(args, stack: Stack, started: float) -> dict:
    bank = bank_load(BANK)
    setup = stack_prepare(stack, args.model)
    teachers = [
        Teacher(Api(stack.base_url, name, TEACHER_PASSWORD), name, project=setup["project"], rule=args.rule, bank=bank)
        for name in stack.teachers
    ]
    record = rounds_run(args, stack, setup, teachers)
    stack.stop()  # the scoring below has the machine to itself
    log("stack stopped; scoring the policies on the held-out prompts")
    conversations = held_out_conversations(setup["project"])
    store = Path(stack.env["MODEL_STORE"])
    record["scoring"] = policies_score(record, conversations, store=store, bank=bank, rule=args.rule)
    record["setup"] = {key: value for key, value in setup.items() if key != "admin"}
    record["arguments"] = {
        "rule": args.rule,
        "model": str(args.model or "SmolLM2 (converted)"),
        "teachers": args.teachers,
        "rounds": args.rounds,
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens,
        "config": args.config,
    }
    record["total_seconds"] = time.monotonic() - started
    record["targets"] = targets_check(record, rounds=args.rounds)
    return record


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    workdir, made = workdir_make(args)
    settings = {"TORCH_CPU_THREADS": str(args.threads), "GENERATION_MAX_NEW_TOKENS": str(args.max_new_tokens)}
    stack = Stack(workdir / "stack", teachers=args.teachers, settings=settings)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the finally below
    try:
        record = run(args, stack, started)
    except Exception:
        for name in ("gpu-worker", "worker", "web"):
            print(f"--- last lines of {name}.log ---\n{stack.log_tail(name)}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        if args.keep:
            log(f"kept {stack.folder}")
        else:
            stack.remove()
            if made:
                shutil.rmtree(workdir, ignore_errors=True)
    report_print(record)
    report_write(record, args.out)
    log(f"report written to {args.out}")
    return 0 if all(target["passed"] for target in record["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
