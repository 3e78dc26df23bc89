"""Stage executors: a round's training stages run in the worker's process (`local`) or as
data-parallel processes on its host (`torchrun`). Here torchrun runs 2 processes on the CPU with
the gloo backend, on a tiny model: each stage finishes with one checkpoint, the reward model
learns exactly what one process learns from the same global batches, the policy stage's sampling
algorithms shape rewards with the statistics of every process's samples, a cancel stops every
process, and a process that dies fails the stage with its own error."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from labeling.errors import LabelingError
from labeling.imports import dataset_import
from tests.factories import DEMOS, PREFERENCES, REWARD, TINY, Recorder, rankings, register_copy, wait_until
from training.ml import options
from training.ml.common import TrainingCancelled
from training.ml.policy import optimize_policy
from training.ml.policy_config import PolicyConfig, policy_sampler
from training.ml.reward import Ranking, RewardConfig, train_reward_model
from training.ml.reward_shaping import RewardShaper
from training.rounds import runner
from training.rounds import services as rounds
from training.rounds.config import round_config_clean, settings_errors
from training.rounds.executors import LocalExecutor, StageFailed, StageJob, TorchrunExecutor
from training.rounds.models import Round, RoundMetric

pytestmark = pytest.mark.processes

TORCHRUN = {"executor": "torchrun", "processes": 2}


def running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def stage_processes(folder: Path) -> list[int]:
    """The processes whose command line names the stage's folder: torchrun's agent and its processes."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and str(folder).encode() in (entry / "cmdline").read_bytes()
                and running(int(entry.name))
            ):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def long_reward_job(model, out_dir) -> StageJob:
    """Many small steps, so the stage is still training when the test acts on it."""
    config = {**REWARD, "epochs": 100, "rankings_per_step": 2, "eval_fraction": 0.0}
    return StageJob(
        "reward",
        train_reward_model,
        {"records": rankings(8), "model_path": str(model), "out_dir": str(out_dir), "config": config},
    )


# --- a round under torchrun ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.timeout(600)
def test_a_round_runs_sft_reward_and_policy_as_two_processes_each_writing_one_checkpoint(
    project, model_store, tiny_model_path, admin_user, settings, tmp_path
):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    dataset_import(project=project, text=DEMOS, fmt="conversations", source="demos")
    dataset_import(project=project, text=PREFERENCES, fmt="preferences", source="prefs")
    register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    config = {**TINY, "deploy": {"threshold": 0.0}, "execution": TORCHRUN}
    round_ = rounds.round_start(project=project, config=config, actor=admin_user, enqueue=False)
    while runner.round_stage_run(round_id=round_.pk) is not None:
        pass
    round_.refresh_from_db()
    assert round_.status == Round.Status.SUCCEEDED, (round_.error, list(round_.stages.values("name", "error")))
    folder = model_store / "projects" / str(project.pk) / "round-1"
    for name in ("sft", "reward", "policy"):
        stage = round_.stages.get(name=name)
        assert "torchrun, 2 processes" in stage.log and "2 processes, gloo backend" in stage.log, stage.log
        assert RoundMetric.objects.filter(stage=stage).exists()  # process 0's progress, as the curves show it
    # One checkpoint per stage, written by process 0 alone; nothing else left in the round's folder.
    assert sorted(path.parent.name for path in folder.rglob("model.safetensors")) == ["policy", "reward", "sft"]
    assert sorted(path.name for path in folder.iterdir()) == ["policy", "reward", "sft"]
    assert json.loads((folder / "reward" / "yushan_stage.json").read_text())["metrics"]["steps"] >= 1
    # Two processes of two conversations each: every SFT step took four demonstrations.
    sft = round_.sft_version.metrics
    assert sft["steps"] == -(-sft["train_conversations"] // 4) < sft["train_conversations"]
    assert round_.policy_version.metrics["algorithm"] == "iterative_dpo", round_.policy_version.metrics


# --- the reward model: two processes learn what one does --------------------------------------------


def test_the_reward_models_epoch_under_two_processes_matches_one_process(tiny_model_path, tmp_path):
    """Batches of 3 rankings split 2 + 1 over the processes: the same global batch, so the same
    losses step by step, the same held-out loss and the same weights as one process."""
    from safetensors.torch import load_file

    runs = {}
    for executor in (LocalExecutor(), TorchrunExecutor(processes=2)):
        recorder = Recorder()
        inputs = {
            "records": rankings(14),
            "model_path": str(tiny_model_path),
            "out_dir": str(tmp_path / executor.name),
            "config": REWARD,
        }
        metrics = executor.run(StageJob("reward", train_reward_model, inputs), recorder)
        runs[executor.name] = (metrics, recorder.losses())
    (one, one_losses), (two, two_losses) = runs["local"], runs["torchrun"]
    assert one["steps"] == two["steps"] == 4 and len(one_losses) == len(two_losses) == 4
    assert sum(two_losses) / 4 == pytest.approx(sum(one_losses) / 4, rel=1e-4)
    assert two_losses == pytest.approx(one_losses, rel=1e-4)
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4) and two["eval_pairs"] == one["eval_pairs"]
    local, distributed = (load_file(tmp_path / name / "model.safetensors") for name in ("local", "torchrun"))
    assert local.keys() == distributed.keys()
    for key in local:
        assert (local[key] - distributed[key]).abs().max() < 1e-4, key


# --- the policy stage's sampling algorithms: the shaping of every process's samples --------------

POLICY_PROMPTS = [{"prompt": [{"role": "user", "content": f"Can you help me with task {i}?"}]} for i in range(4)]
TINY_POLICY = {"prompts_per_step": 2, "generations_per_prompt": 2, "max_completion_length": 6, "kl_beta": 0.1}


@pytest.fixture(scope="module")
def tiny_reward_model_path(tmp_path_factory, tiny_model_path):
    answers = ["Yes, gladly!", "Maybe.", "No."]
    examples = [Ranking([{"role": "user", "content": f"Question {i}"}], answers, [1, 2, 3]) for i in range(4)]
    path = tmp_path_factory.mktemp("models") / "rm"
    train_reward_model(examples, str(tiny_model_path), str(path), RewardConfig(epochs=1, eval_fraction=0))
    return path


def run_policy_as_two_processes(model, reward_model, out_dir, config) -> tuple[dict, Recorder]:
    inputs = {
        "records": POLICY_PROMPTS,
        "model_path": str(model),
        "reward_model_path": str(reward_model),
        "out_dir": str(out_dir),
        "config": {**TINY_POLICY, **config},
    }
    recorder = Recorder()
    metrics = TorchrunExecutor(processes=2).run(StageJob("policy", optimize_policy, inputs), recorder)
    return metrics, recorder


def assert_one_shaping_for_both_processes(metrics: dict, samples: int) -> None:
    """Both processes standardised with the same mean and std, fixed by every process's samples,
    and removed the same length slope; the stage's metrics (process 0's) show each one's."""
    shaping = metrics["reward_shaping"]
    first, second = shaping["by_process"]
    assert first == second == {key: value for key, value in shaping.items() if key != "by_process"}
    assert shaping["samples"] == samples and shaping["std"] > 0 and "length_slope_last" in shaping


def assert_one_checkpoint(out_dir: Path, metrics: dict) -> None:
    assert [path.parent for path in out_dir.parent.rglob("model.safetensors")] == [out_dir]
    assert json.loads((out_dir / "yushan_stage.json").read_text())["metrics"] == metrics


@pytest.mark.timeout(600)
def test_grpo_runs_as_two_processes_shaping_rewards_on_every_processs_samples(
    tiny_model_path, tiny_reward_model_path, tmp_path
):
    """A step's 2 prompts, one per process, 2 answers each. The KL budget is passed at step 2 (step
    1 starts at the reference): both processes stop there, or one would wait for the other for ever."""
    config = {"algorithm": "grpo", "steps": 4, "learning_rate": 1e-2, "kl_budget": 1e-6}
    metrics, recorder = run_policy_as_two_processes(tiny_model_path, tiny_reward_model_path, tmp_path / "p", config)
    assert any("2 processes, gloo backend" in line for line in recorder.lines), recorder.lines
    assert metrics["steps"] == 2 and "budget" in metrics["stopped_early"]
    assert [(step, total) for step, total, m in recorder.points if "loss" in m][:2] == [(1, 4), (2, 4)]
    assert_one_shaping_for_both_processes(metrics, samples=2 * 2)  # the whole step: both processes' answers
    assert_one_checkpoint(tmp_path / "p", metrics)


@pytest.mark.timeout(600)
def test_iterative_dpo_runs_as_two_processes_on_one_set_of_pairs(tiny_model_path, tiny_reward_model_path, tmp_path):
    """4 prompts, 2 per process, 2 answers each: the calibration is fixed by all 8 answers, and both
    processes train DPO on the pairs of all 4 prompts."""
    config = {"algorithm": "iterative_dpo", "iterations": 2, "learning_rate": 1e-3}
    metrics, recorder = run_policy_as_two_processes(tiny_model_path, tiny_reward_model_path, tmp_path / "p", config)
    iterations = [(step, total, m) for step, total, m in recorder.points if "pairs" in m]
    assert [(step, total) for step, total, _ in iterations] == [(1, 2), (2, 2)]
    assert all(0 <= m["pairs"] <= 4 for _, _, m in iterations)
    assert metrics["steps"] == 2 and metrics["kl_first"] == pytest.approx(0.0, abs=1e-5)
    assert_one_shaping_for_both_processes(metrics, samples=4 * 2)
    assert_one_checkpoint(tmp_path / "p", metrics)


SHAPER_SCRIPT = """
import json, sys
import torch.distributed as dist
from training.ml.reward_shaping import RewardShaper

dist.init_process_group("gloo")
batches = json.loads(sys.argv[2])
shaper, rank = RewardShaper(), dist.get_rank()
shaped = [shaper(batch["scores"][rank], batch["lengths"][rank]) for batch in batches]
with open(f"{sys.argv[1]}/rank-{rank}.json", "w") as out:
    json.dump({"shaped": shaped, "record": shaper.record()}, out)
dist.destroy_process_group()
"""


def test_two_processes_shape_their_rewards_as_one_process_shapes_them_all(tmp_path):
    """Each process shapes its own scores; mean, std and length slope are the whole batch's, so
    the shaped rewards are, number for number, those of one process given every score."""
    batches = [  # two batches, the second after the calibration; longer answers score higher in both
        {"scores": [[0.5, 2.0, -1.0], [3.0, 0.25]], "lengths": [[4, 9, 2], [12, 7]]},
        {"scores": [[1.5, 4.0], [0.0, 2.5, 2.0]], "lengths": [[6, 14], [3, 10, 8]]},
    ]
    script = tmp_path / "shape.py"
    script.write_text(SHAPER_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    subprocess.run([*command, str(script), str(tmp_path), json.dumps(batches)], cwd=root, env=env, check=True)
    ranks = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]

    alone = RewardShaper()
    for i, batch in enumerate(batches):
        expected = alone([s for part in batch["scores"] for s in part], [n for part in batch["lengths"] for n in part])
        assert ranks[0]["shaped"][i] + ranks[1]["shaped"][i] == pytest.approx(expected, rel=1e-12)
    assert alone.history[0]["length_slope"] > 0  # length control had something to remove
    record = alone.record()
    assert ranks[0]["record"] == ranks[1]["record"] == {**record, "by_process": [record, record]}


# --- cancel, and a process that dies -------------------------------------------------------------


def test_cancelling_stops_every_process_and_writes_nothing(tiny_model_path, tmp_path):
    executor = TorchrunExecutor(processes=2)
    seen = {}

    def cancel_once_training(recorder):
        if not seen and any(step >= 1 for step, _, _ in recorder.points):
            seen["pids"], seen["folder"] = executor.rank_pids(), executor.folder

    recorder = Recorder(on_progress=cancel_once_training, stop=lambda: bool(seen))
    with pytest.raises(TrainingCancelled, match="stopped the stage's 2 processes"):
        executor.run(long_reward_job(tiny_model_path, tmp_path / "reward"), recorder)
    assert len(seen["pids"]) == 2
    assert not [pid for pid in seen["pids"] if running(pid)] and not stage_processes(seen["folder"])
    assert not (tmp_path / "reward").exists()
    assert recorder.points[-1][0] < recorder.points[-1][1]  # it stopped before the last step


def test_a_process_killed_mid_stage_fails_it_with_that_processs_end(tiny_model_path, tmp_path):
    executor = TorchrunExecutor(processes=2)
    seen = {}

    def kill_process_1(recorder):
        if not seen and any(step >= 1 for step, _, _ in recorder.points):
            seen["pids"], seen["folder"] = executor.rank_pids(), executor.folder
            os.kill(seen["pids"][1], signal.SIGKILL)

    with pytest.raises(StageFailed, match=r"^process 1 of 2: killed by SIGKILL$"):
        executor.run(long_reward_job(tiny_model_path, tmp_path / "reward"), Recorder(on_progress=kill_process_1))
    wait_until(lambda: not stage_processes(seen["folder"]), seconds=30, what="the other process to stop")
    assert not [pid for pid in seen["pids"] if running(pid)]
    assert not (tmp_path / "reward").exists()


def test_a_process_that_raises_fails_the_stage_with_its_error(tiny_model_path, tmp_path):
    inputs = {
        "records": [{"prompt": "a question"}],
        "model_path": str(tiny_model_path),
        "out_dir": str(tmp_path / "rm"),
        "config": REWARD,
    }
    recorder = Recorder()
    expected = r"^process \d of 2: ValueError: row 1: expected completions\+ranks or chosen\+rejected$"
    with pytest.raises(StageFailed, match=expected):
        TorchrunExecutor(processes=2).run(StageJob("reward", train_reward_model, inputs), recorder)
    assert "Traceback" in recorder.lines[-1] and "ValueError: row 1" in recorder.lines[-1]  # in the stage's log


def test_the_processes_die_with_the_worker_that_started_them(tiny_model_path, tmp_path):
    """A worker killed mid-stage (out of memory, say) takes its stage's processes with it; the
    stage itself is failed later by the stale-stage check, as for a local stage."""
    job = long_reward_job(tiny_model_path, tmp_path / "rm")
    script = f"""
from training.rounds.executors import StageJob, TorchrunExecutor
from training.ml.reward import train_reward_model

class Reporter:
    points = 0
    def progress(self, step, total, metrics):
        self.points += 1
        if self.points == 2:
            print(executor.folder, *executor.rank_pids(), flush=True)
    def should_stop(self):
        return False
    def log(self, line):
        pass

executor = TorchrunExecutor(processes=2)
executor.run(StageJob("reward", train_reward_model, {job.inputs!r}), Reporter())
"""
    root = Path(__file__).resolve().parents[1]
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        folder, *pids = worker.stdout.readline().split()
    finally:
        worker.kill()
        worker.wait()
    assert len(pids) == 2, "the worker never reported its processes"
    wait_until(lambda: not stage_processes(Path(folder)), seconds=30, what="the stage's processes to stop")
    assert not [pid for pid in map(int, pids) if running(pid)]


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rounds_run_where_the_hosts_default_says_unless_they_say_otherwise(project, settings):
    assert round_config_clean(None, project=project)["execution"] == {"executor": "local", "processes": 1}
    settings.ROUND_EXECUTOR, settings.ROUND_PROCESSES = "torchrun", 4
    assert round_config_clean(None, project=project)["execution"] == {"executor": "torchrun", "processes": 4}
    chosen = round_config_clean({"execution": {"executor": "local"}}, project=project)["execution"]
    assert chosen == {"executor": "local", "processes": 4}


@pytest.mark.django_db
@pytest.mark.parametrize("algorithm", ["dpo", "rloo", "grpo", "iterative_dpo"])
def test_torchrun_runs_every_policy_algorithm_in_parallel(project, algorithm):
    config = round_config_clean({"policy": {"algorithm": algorithm}, "execution": TORCHRUN}, project=project)
    assert config["policy"]["algorithm"] == algorithm and config["execution"] == TORCHRUN


@pytest.mark.django_db
def test_torchrun_refuses_a_step_it_cannot_share_out_equally(project):
    policy = {"algorithm": "grpo", "prompts_per_step": 3}
    with pytest.raises(LabelingError) as refused:
        round_config_clean({"policy": policy, "execution": TORCHRUN}, project=project)
    assert refused.value.errors == {
        "config.policy.prompts_per_step": "must be a multiple of the torchrun processes (2): "
        "each takes an equal share of a step"
    }
    # One process, or the local executor, takes any number.
    round_config_clean({"policy": policy, "execution": {"executor": "torchrun", "processes": 1}}, project=project)
    round_config_clean({"policy": policy}, project=project)


# --- the policy stage's sampler ------------------------------------------------------------------


def test_the_sampler_is_vllm_where_it_can_run_and_transformers_elsewhere(monkeypatch):
    from training.ml import generation

    monkeypatch.setattr(generation, "vllm_usable", lambda: False)
    assert policy_sampler(PolicyConfig(algorithm="grpo")) == "transformers"  # auto, the default
    assert policy_sampler(PolicyConfig(algorithm="grpo", sampler="transformers")) == "transformers"
    monkeypatch.setattr(generation, "vllm_usable", lambda: True)
    assert policy_sampler(PolicyConfig(algorithm="grpo")) == "vllm"
    assert policy_sampler(PolicyConfig(algorithm="grpo", sampler="transformers")) == "transformers"


@pytest.mark.parametrize("algorithm", ["rloo", "iterative_dpo"])
def test_vllm_where_it_cannot_run_is_refused_as_a_setting_before_anything_loads(algorithm, monkeypatch, tmp_path):
    from django.utils import translation

    from training.ml import generation

    monkeypatch.setattr(generation, "vllm_usable", lambda: False)
    config = PolicyConfig(algorithm=algorithm, sampler="vllm")
    with pytest.raises(options.SettingsError) as refused:
        optimize_policy(POLICY_PROMPTS, "no-such-model", "no-such-reward-model", str(tmp_path / "p"), config)
    assert refused.value.errors == {
        "sampler": "must be auto or transformers here: vLLM is not installed, or there is no CUDA GPU"
    }
    assert not (tmp_path / "p").exists()
    with translation.override("zh-hant"):
        assert settings_errors(refused.value) == {
            "sampler": "在這裡必須是 auto 或 transformers：未安裝 vLLM，或沒有 CUDA GPU"
        }
