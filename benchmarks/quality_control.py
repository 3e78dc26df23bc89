"""Quality control of human labels, measured: do Yushan's reliability estimates find the careless
annotators, and does the weighted consensus train a better reward model than counting everyone alike?

    .venv/bin/python benchmarks/quality_control.py                      # SmolLM2 from var/models
    .venv/bin/python benchmarks/quality_control.py --model /tmp/tiny --skip-reward-models

What it does, in a throwaway Yushan (its own SQLite database and web server in a temporary folder):

1. Ranking tasks with a known true order. For each prompt of benchmarks/closed_loop_prompts.jsonl
   (half 繁體中文, half English), twice (the question as asked, and with "answer briefly"
   appended), four answers: the bank's reference answer, best; the same with a filler sentence
   ("I hope this helps."), second; the reference answer of another prompt in the same language
   (wrong), third; an answer in the other language, last. 288 tasks, K = 4, overlap 3, imported
   with `import_prompts`.
2. Simulated annotators of known reliability label them **through the REST API**, as browser
   annotators do (`/api/v1/tasks/next/`, `/api/v1/tasks/ID/ranking/`), all at once, one thread
   each: by default 14 careful ones (pair accuracy 0.84 to 0.96), 4 noisy (0.55 to 0.65), one
   random (0.5) and one adversarial (0.1). An annotator decides each of the 6 pairs of a task
   right with their accuracy, then orders the answers by the pairs they won.
3. The project's agreement report and its `consensus` snapshot (labeling.quality), read as an
   admin and a researcher would. Printed:
   - the estimated reliability of each annotator against their true accuracy (what they actually
     got right), and the Spearman correlation of the two;
   - the share of answer pairs ordered right by one annotator alone (the task's first), by a
     majority of its three annotators, and by the weighted consensus;
   - the held-out accuracy, on the true order of the tasks of a third of the prompts, of three
     reward models trained with the round's reward settings on the other two thirds: on every
     annotator's ranking alike (the `ranking` snapshot, `plain`), on every ranking with its pairs
     weighted by reliability (`ranking` with the `weighted` filter: the rounds' default), and on
     one consensus ranking per task (the `consensus` snapshot). 95% intervals resample tasks;
     differences to `plain` are paired.

4. Gold screening: GOLD_TASKS more tasks of the same shape (the question with "in one sentence"
   appended) are imported as gold tasks, their true order as the known answer, and served at the
   project's gold rate (GOLD_RATE), indistinguishable from the others. An annotator whose gold
   accuracy is confidently below the project's threshold (0.75: the 95% interval's upper end) is
   put on hold and gets 403 on the next task; the benchmark records who was held, after how many
   gold answers, and every annotator's gold accuracy as the admin sees it.

Targets: Spearman >= 0.9; the weighted consensus at least 5 points above majority vote; the
weighted reward model (the rounds' default) at least as accurate as the unweighted one; gold
screening puts every random or adversarial annotator on hold and no careful one. The JSON report
goes to --out (default benchmarks/results/quality_control.json).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.closed_loop_stack import ADMIN, TEACHER_PASSWORD, Api, Stack, django_setup, log  # noqa: E402

BANK = ROOT / "benchmarks" / "closed_loop_prompts.jsonl"
PROJECT = "Quality control"
K, OVERLAP = 4, 3
FILLER = {
    "en": ("I hope this helps.", "Let me know if you have other questions."),
    "zh": ("希望這對你有幫助。", "還有問題歡迎再問。"),
}
BRIEFLY = {"en": " Please answer briefly.", "zh": "請簡短回答。"}
ONE_SENTENCE = {"en": " Answer in one sentence.", "zh": "請用一句話回答。"}
GOLD_TASKS, GOLD_RATE = 32, 0.15
# name: pair accuracy. Careful ones spread over 0.84..0.96, noisy over 0.55..0.65.
ANNOTATORS = {
    **{f"careful{i + 1}": round(0.84 + 0.12 * i / 13, 3) for i in range(14)},
    **{f"noisy{i + 1}": round(0.55 + 0.10 * i / 3, 3) for i in range(4)},
    "random1": 0.5,
    "adversarial1": 0.1,
}


# --- the tasks -------------------------------------------------------------------------------------


def tasks_build(seed: int = 0) -> tuple[list[dict], dict[str, dict[str, int]], dict[str, str]]:
    """Import rows {prompt, answers} (and GOLD_TASKS rows with `gold`: their true order), the true
    rank of every answer of every prompt, and each prompt's bank prompt (the held-out split is made
    by bank prompt)."""
    rows = [json.loads(line) for line in BANK.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_lang = defaultdict(list)
    for row in rows:
        by_lang[row["lang"]].append(row)
    rng = random.Random(seed)
    imports, truth, origin = [], {}, {}
    for variant in (0, 1):
        for row in rows:
            lang, other = row["lang"], "en" if row["lang"] == "zh" else "zh"
            same = [r for r in by_lang[lang] if r["answer"] != row["answer"]]
            answers = [
                row["answer"],
                row["answer"] + (" " if lang == "en" else "") + FILLER[lang][variant],
                rng.choice(same)["answer"],
                rng.choice(by_lang[other])["answer"],
            ]
            prompt = row["prompt"] + (BRIEFLY[lang] if variant else "")
            imports.append({"prompt": prompt, "answers": answers})
            truth[prompt] = {answer: rank for rank, answer in enumerate(answers, start=1)}
            origin[prompt] = row["prompt"]
    for row in rng.sample(rows, GOLD_TASKS):
        lang, other = row["lang"], "en" if row["lang"] == "zh" else "zh"
        same = [r for r in by_lang[lang] if r["answer"] != row["answer"]]
        answers = [
            row["answer"],
            row["answer"] + (" " if lang == "en" else "") + FILLER[lang][0],
            rng.choice(same)["answer"],
            rng.choice(by_lang[other])["answer"],
        ]
        prompt = row["prompt"] + ONE_SENTENCE[lang]
        imports.append({"prompt": prompt, "answers": answers, "gold": [[0], [1], [2], [3]]})
        truth[prompt] = {answer: rank for rank, answer in enumerate(answers, start=1)}
        origin[prompt] = row["prompt"]
    return imports, truth, origin


# --- the annotators --------------------------------------------------------------------------------


def noisy_ranking(true_rank: dict[str, int], accuracy: float, rng: random.Random) -> list[str]:
    """Each pair decided right with `accuracy`; answers ordered by the pairs they won."""
    wins = dict.fromkeys(true_rank, 0)
    for x, y in combinations(sorted(true_rank), 2):
        better, worse = (x, y) if true_rank[x] < true_rank[y] else (y, x)
        if rng.random() >= accuracy:
            better, worse = worse, better
        wins[better] += 1
    return sorted(true_rank, key=lambda answer: (-wins[answer], rng.random()))


class Annotator:
    def __init__(self, api: Api, name: str, accuracy: float, project: int, truth: dict, seed: int):
        self.api, self.name, self.accuracy, self.project, self.truth = api, name, accuracy, project, truth
        self.rng = random.Random(f"{seed}:{name}")
        self.submitted: list[tuple[str, list[str]]] = []  # (prompt, order by candidate text)
        self.held_after: int | None = None  # tasks submitted when the project put them on hold

    def label_all(self) -> None:
        while True:
            task = self.api.get("/api/v1/tasks/next/", params={"project": self.project}, expect=(200, 204, 403))
            if task is not None and "id" not in task:  # 403: on hold, with the reason
                self.held_after = len(self.submitted)
                return
            if task is None:
                return
            prompt = task["messages"][-1]["content"]
            text_of = {c["id"]: c["text"] for c in task["candidates"]}
            true_rank = {c["id"]: self.truth[prompt][c["text"]] for c in task["candidates"]}
            order = noisy_ranking(true_rank, self.accuracy, self.rng)
            body = {"ranking": [[answer_id] for answer_id in order], "client_id": str(uuid.uuid4())}
            self.api.post(f"/api/v1/tasks/{task['id']}/ranking/", body, expect=(201,))
            self.submitted.append((prompt, [text_of[answer_id] for answer_id in order]))


def labeling_pass(annotators: list[Annotator]) -> float:
    started = time.monotonic()
    errors = []

    def run(annotator):
        try:
            annotator.label_all()
        except Exception as error:  # noqa: BLE001 - reported below, with the annotator's name
            errors.append(f"{annotator.name}: {error}")

    threads = [threading.Thread(target=run, args=(a,)) for a in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("labeling failed: " + "; ".join(errors))
    return time.monotonic() - started


# --- measures --------------------------------------------------------------------------------------


def true_accuracy(submitted: list[tuple[str, list[str]]], truth: dict) -> tuple[float, int]:
    """Share of the pairs an annotator ordered as the truth does, over everything they submitted."""
    right = pairs = 0
    for prompt, order in submitted:
        position = {text: i for i, text in enumerate(order)}
        for x, y in combinations(order, 2):
            pairs += 1
            right += (position[x] < position[y]) == (truth[prompt][x] < truth[prompt][y])
    return (right / pairs if pairs else 0.0), pairs


def consensus_accuracies(annotators: list[Annotator], consensus_rows: list[dict], truth: dict, gold: set) -> dict:
    """Pairs ordered right by one annotator (each task's first submission), by a majority of the
    task's annotators, and by the weighted consensus."""
    by_prompt = defaultdict(list)
    for annotator in annotators:
        for prompt, order in annotator.submitted:
            if prompt not in gold:  # gold tasks check annotators; no consensus is made of them
                by_prompt[prompt].append(order)
    single = majority = weighted = pairs = 0
    consensus = {row["prompt"][-1]["content"]: row for row in consensus_rows}
    for prompt, orders in by_prompt.items():
        row = consensus.get(prompt)
        merged = {}
        if row is not None:
            merged = {c[0]["content"]: rank for c, rank in zip(row["completions"], row["ranks"], strict=True)}
        for x, y in combinations(sorted(truth[prompt]), 2):
            x_better = truth[prompt][x] < truth[prompt][y]
            votes = [order.index(x) < order.index(y) for order in orders]
            pairs += 1
            single += votes[0] == x_better
            majority += (sum(votes) * 2 > len(votes)) == x_better if len(votes) % 2 else 0.5
            if x in merged and y in merged and merged[x] != merged[y]:
                weighted += (merged[x] < merged[y]) == x_better
            else:
                weighted += 0.5  # a tie (or an answer the consensus left out) is a coin flip
    return {"pairs": pairs, "single": single / pairs, "majority": majority / pairs, "weighted": weighted / pairs}


def project_label(stack, admin: Api, name: str, rows: list[dict], truth: dict, seed: int, *, gold_rate: float):
    """A project of these task rows (imported), labeled by every simulated annotator through the
    API: (project id, annotators, seconds)."""
    project = admin.post(
        "/api/v1/projects/",
        {
            "name": name,
            "guidelines": "Rank by the true order.",
            "k": K,
            "overlap": OVERLAP,
            "held_out_share": 0.0,
            "gold_rate": gold_rate,
        },
        expect=(201,),
    )["id"]
    bank = stack.folder / f"tasks-{project}.jsonl"
    bank.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    log(stack.manage("import_prompts", str(bank), "--project", name).strip())
    annotators = [
        Annotator(Api(stack.base_url, user, TEACHER_PASSWORD), user, accuracy, project, truth, seed)
        for user, accuracy in ANNOTATORS.items()
    ]
    return project, annotators, labeling_pass(annotators)


def gold_screening(annotators: list[Annotator], gold_view: dict) -> dict:
    """Who the project put on hold, after how many tasks, and each annotator's gold accuracy as the
    admin's gold report (GET /api/v1/projects/ID/gold/) gives it."""
    report = {row["annotator"]: row for row in gold_view["annotators"]}
    rows = []
    for annotator in annotators:
        seen = report.get(annotator.name, {})
        rows.append(
            {
                "annotator": annotator.name,
                "nominal": annotator.accuracy,
                "held": annotator.held_after is not None,
                "held_after_tasks": annotator.held_after,
                "gold_answers": seen.get("gold_answers", 0),
                "gold_accuracy": seen.get("accuracy"),
                "gold_ci": seen.get("interval"),
            }
        )
    return {"rate": GOLD_RATE, "tasks": GOLD_TASKS, "annotators": rows}


def snapshot_rows(project_id: int, kind: str, filters: dict | None = None) -> list[dict]:
    from django.db import connections

    from labeling.models import Project
    from training.datasets.services import snapshot_build, snapshot_create, snapshot_file
    from training.ml.common import load_records

    snapshot = snapshot_create(
        project=Project.objects.get(pk=project_id), kind=kind, format="jsonl", filters=filters or {}
    )
    snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    if snapshot.status != "ready":
        raise RuntimeError(f"{kind} snapshot failed: {snapshot.error}")
    rows = load_records(snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)[0])
    connections.close_all()
    return rows


def reward_models_compare(rows: dict[str, list[dict]], truth: dict, origin: dict, model: str, seed: int) -> dict:
    """Train a reward model on each kind's rows of the training prompts; accuracy on the true order
    of the held-out prompts' tasks, with intervals and the paired difference."""
    from training.ml.held_out import accuracy_difference, accuracy_report, reward_model_outcomes
    from training.ml.reward import RewardConfig, train_reward_model
    from training.ml.reward_data import Ranking, rankings_from_records
    from training.rounds.config import ROUND_DEFAULTS

    bank_prompts = sorted(set(origin.values()))
    random.Random(seed).shuffle(bank_prompts)
    held = set(bank_prompts[: len(bank_prompts) // 3])
    evaluation = [
        Ranking([{"role": "user", "content": prompt}], list(ranks), list(ranks.values()))
        for prompt, ranks in truth.items()
        if origin[prompt] in held
    ]
    config = {**ROUND_DEFAULTS["reward"], "eval_fraction": 0.0, "seed": seed}
    report, outcomes = {}, {}
    for kind, kind_rows in rows.items():
        train = [r for r in kind_rows if origin[r["prompt"][-1]["content"]] not in held]
        with tempfile.TemporaryDirectory() as out:
            started = time.monotonic()
            metrics = train_reward_model(rankings_from_records(train), model, out, RewardConfig(**config), held_out=[])
            outcomes[kind] = reward_model_outcomes(evaluation, out)
        report[kind] = {
            **accuracy_report(outcomes[kind]),
            "train_rows": len(train),
            "steps": metrics["steps"],
            "seconds": time.monotonic() - started,
        }
        log(f"reward model on {kind} rows: held-out accuracy {report[kind]['accuracy']:.3f}")
    report["difference"] = accuracy_difference(outcomes["consensus"], outcomes["ranking"])
    report["difference_weighted"] = accuracy_difference(outcomes["weighted"], outcomes["ranking"])
    report["held_out_tasks"] = len(evaluation)
    return report


# --- the run ---------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    from benchmarks.reward_kwise import default_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="reward models start from this checkpoint (default: SmolLM2 in var/models)")
    parser.add_argument("--skip-reward-models", action="store_true", help="only the labeling and consensus figures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality_control.json")
    args = parser.parse_args(argv)
    args.model = args.model or default_model()
    if args.model is None and not args.skip_reward_models:
        parser.error("no model: run `make run` once (it converts SmolLM2 into var/models) or pass --model")
    return args


def targets_check(record: dict) -> list[dict]:
    targets = [
        (
            "reliability estimates rank annotators as their true accuracy does: Spearman >= 0.9",
            record["spearman"] >= 0.9,
            f"{record['spearman']:.3f}",
        ),
        (
            "weighted consensus at least 5 points above majority vote",
            record["consensus"]["weighted"] - record["consensus"]["majority"] >= 0.05,
            f"{record['consensus']['weighted']:.3f} vs {record['consensus']['majority']:.3f}",
        ),
    ]
    models = record.get("reward_models")
    if models:
        targets.append(
            (
                "the weighted reward model (rounds' default) at least as accurate as the unweighted one",
                models["weighted"]["accuracy"] >= models["ranking"]["accuracy"],
                f"{models['weighted']['accuracy']:.3f} vs {models['ranking']['accuracy']:.3f}",
            )
        )
    screened = {row["annotator"]: row for row in record["gold"]["annotators"]}
    careless = [name for name in screened if name.startswith(("random", "adversarial"))]
    careful = [name for name in screened if name.startswith("careful")]
    held = [name for name in screened if screened[name]["held"]]
    targets.append(
        (
            "gold screening holds every random or adversarial annotator and no careful one",
            all(screened[name]["held"] for name in careless) and not any(screened[name]["held"] for name in careful),
            f"held: {', '.join(held) or 'nobody'}",
        )
    )
    return [{"name": name, "passed": bool(passed), "detail": detail} for name, passed, detail in targets]


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["TORCH_CPU_THREADS"] = str(args.threads)
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="yushan-quality-"))
    # 21 accounts log in from one address within a minute: more than the default per-address limit.
    stack = Stack(folder, teachers=0, settings={"LOGIN_THROTTLE_RATE": "1000/min"})
    stack.teachers = list(ANNOTATORS)
    try:
        log(f"stack in {folder}")
        stack.migrate()
        django_setup(folder)
        stack.users_create()
        stack.start()
        admin = Api(stack.base_url, *ADMIN)
        imports, truth, origin = tasks_build(args.seed)
        # The reliability model and the consensus are measured on every annotator's labels, as a
        # project without gold tasks gets them; gold screening in a second project with the same
        # tasks and the gold ones, where the careless stop at their hold.
        plain = [row for row in imports if "gold" not in row]
        project, annotators, seconds = project_label(stack, admin, PROJECT, plain, truth, args.seed, gold_rate=0.0)
        rankings = sum(len(a.submitted) for a in annotators)
        log(f"{len(annotators)} annotators submitted {rankings} rankings through the API in {seconds:.0f} s")
        researcher_view = admin.get(f"/api/v1/projects/{project}/agreement/")
        screened, screened_annotators, _ = project_label(
            stack, admin, PROJECT + " (gold screening)", imports, truth, args.seed, gold_rate=GOLD_RATE
        )
        gold_view = admin.get(f"/api/v1/projects/{screened}/gold/")
        screened_rows = snapshot_rows(screened, "consensus")
        stack.stop()

        rows = {
            "ranking": snapshot_rows(project, "ranking"),
            "consensus": snapshot_rows(project, "consensus"),
            "weighted": snapshot_rows(project, "ranking", {"weighted": True}),
        }
        from scipy.stats import spearmanr

        from labeling.models import Project
        from labeling.quality.agreement import RankingLabel
        from labeling.quality.reliability import consensus_fit
        from labeling.quality.selectors import shared_rankings

        labels = [
            RankingLabel(task, annotator, groups)
            for task, annotator, groups in shared_rankings(Project.objects.get(pk=project)).values_list(
                "task_id", "annotator_id", "groups"
            )
        ]
        skills = consensus_fit(labels).skills
        from django.contrib.auth import get_user_model

        ids = dict(get_user_model().objects.filter(username__in=list(ANNOTATORS)).values_list("username", "pk"))
        table = []
        for annotator in annotators:
            accuracy, pairs = true_accuracy(annotator.submitted, truth)
            table.append(
                {
                    "annotator": annotator.name,
                    "nominal": annotator.accuracy,
                    "true": accuracy,
                    "pairs": pairs,
                    "estimated": skills.get(ids[annotator.name]),
                }
            )
        spearman = float(spearmanr([r["estimated"] for r in table], [r["true"] for r in table]).statistic)
        gold_prompts = {row["prompt"] for row in imports if "gold" in row}
        record = {
            "annotators": table,
            "spearman": spearman,
            "consensus": consensus_accuracies(annotators, rows["consensus"], truth, gold_prompts),
            "gold": gold_screening(screened_annotators, gold_view)
            | {"consensus": consensus_accuracies(screened_annotators, screened_rows, truth, gold_prompts)},
            "agreement": {
                key: researcher_view[key] for key in ("alpha", "flags_agreement", "none_acceptable_agreement")
            }
            | {"pairwise": {k: v for k, v in researcher_view["pairwise"].items() if k not in ("annotators", "by_day")}},
            "rankings": rankings,
            "labeling_seconds": seconds,
        }
        if not args.skip_reward_models:
            import torch

            torch.set_num_threads(args.threads)
            record["reward_models"] = reward_models_compare(rows, truth, origin, args.model, args.seed)
        record["total_seconds"] = time.monotonic() - started
        record["targets"] = targets_check(record)
    finally:
        stack.stop()
        stack.remove()
    report_print(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0 if all(t["passed"] for t in record["targets"]) else 1


def report_print(record: dict) -> None:
    print(f"\n{'annotator':<14}{'nominal':>9}{'true':>8}{'estimated':>11}{'pairs':>7}")
    for row in sorted(record["annotators"], key=lambda r: -r["true"]):
        print(
            f"{row['annotator']:<14}{row['nominal']:>9.3f}{row['true']:>8.3f}{row['estimated']:>11.3f}{row['pairs']:>7}"
        )
    print(f"Spearman (estimated vs true): {record['spearman']:.3f}")
    c = record["consensus"]
    print(
        f"pairs ordered right, of {c['pairs']}: one annotator {c['single']:.3f}, majority of 3 {c['majority']:.3f}, weighted consensus {c['weighted']:.3f}"
    )
    pw = record["agreement"]["pairwise"]
    print(
        f"agreement: pairwise {pw['agreement']:.3f} {pw['agreement_ci']}, Krippendorff's alpha (rankings) {record['agreement']['alpha']['rankings']:.3f}"
    )
    models = record.get("reward_models")
    if models:
        for kind in ("ranking", "consensus", "weighted"):
            m = models[kind]
            print(
                f"reward model on {kind:<9} rows ({m['train_rows']:>3}): held-out accuracy {m['accuracy']:.3f} [{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}], {m['seconds']:.0f} s"
            )
        for name, key in (("weighted", "difference_weighted"), ("consensus", "difference")):
            d = models[key]
            low, high = d["difference_ci"]
            print(
                f"{name} - plain: {d['difference']:+.3f} [{low:+.3f}, {high:+.3f}], paired, {models['held_out_tasks']} tasks"
            )
    print(f"\n{'annotator':<14}{'nominal':>9}{'gold':>6}{'accuracy':>10}  {'95% CI':<16}held")
    for row in record["gold"]["annotators"]:
        accuracy = "—" if row["gold_accuracy"] is None else f"{row['gold_accuracy']:.3f}"
        ci = "" if not row["gold_ci"] else f"[{row['gold_ci'][0]:.2f}, {row['gold_ci'][1]:.2f}]"
        held = f"after {row['held_after_tasks']} tasks" if row["held"] else "no"
        print(f"{row['annotator']:<14}{row['nominal']:>9.3f}{row['gold_answers']:>6}{accuracy:>10}  {ci:<16}{held}")
    g = record["gold"]["consensus"]
    print(
        f"with gold screening: pairs ordered right by one annotator {g['single']:.3f}, majority of 3 {g['majority']:.3f}, weighted consensus {g['weighted']:.3f}"
    )
    print(f"total {record['total_seconds'] / 60:.1f} min\n")
    for target in record["targets"]:
        print(f"{'PASS' if target['passed'] else 'FAIL'}  {target['name']} ({target['detail']})")


if __name__ == "__main__":
    sys.exit(main())
