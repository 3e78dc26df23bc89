"""The `ray` stage executor: a round's training stage submitted to a Ray cluster as a Ray job and
run there by 2 Ray Train workers (gloo on the CPU), on a tiny model. The stage ends with one
checkpoint, the progress of worker 0 and the losses one process has; a redelivered message follows
the job that is already there instead of submitting another; a cancel stops the job; a worker that
raises fails the stage with its own error; a retry stops its earlier attempt's job.

The cluster is a Ray head on this machine: the one CI starts (.ci/run), else one these tests start
for the session (GCS on 6380, beside Redis's 6379; the Jobs API on the dashboard, 127.0.0.1:8265).
Without Ray the tests skip on a laptop and fail in CI.
"""

import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from labeling.errors import LabelingError
from labeling.imports import dataset_import
from tests.factories import PREFERENCES, REWARD, TINY, Recorder, rankings, register_copy, service_missing, wait_until
from training.datasets.services import snapshot_file
from training.ml.common import TrainingCancelled, load_records
from training.ml.reward import train_reward_model
from training.rounds import runner
from training.rounds import services as rounds
from training.rounds.config import round_config_clean
from training.rounds.executors import RAY_JOBS, LocalExecutor, RayExecutor, StageFailed, StageJob, stage_key
from training.rounds.models import RoundMetric

pytestmark = pytest.mark.processes

RAY = {"executor": "ray", "processes": 2}
HEAD_PORT = 6380  # Redis has 6379, Ray's own default
HEAD_START_SECONDS = 120


def answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory):
    """The Jobs API of a Ray head: the one at RAY_ADDRESS if it answers, else one started here with
    2 CPUs and stopped after the session (with `python` on its PATH, this virtualenv's)."""
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        service_missing("Ray is not installed (pip install -r requirements-dev.txt)")
    address = django_settings.RAY_ADDRESS.rstrip("/")
    if answers(address):
        yield address
        return
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        service_missing(f"no Ray head at {address}, and no `ray` to start one (pip install -r requirements-dev.txt)")
    port = address.rsplit(":", 1)[-1]
    folder = tmp_path_factory.mktemp("ray-head")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(ray.parent), os.environ.get("PATH", "")]),
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # stop at once: nothing of ours runs by then
    }
    command = [
        str(ray),
        *("start", "--head", "--block", f"--port={HEAD_PORT}", "--num-cpus=2", "--disable-usage-stats"),
        *("--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={port}"),
    ]
    with (folder / "head.log").open("wb") as log:
        head = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: answers(address) or head.poll() is not None, seconds=HEAD_START_SECONDS, what="the Ray head")
        if head.poll() is not None:
            service_missing(f"the Ray head did not start: {(folder / 'head.log').read_text()[-2000:]}")
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops every process it started
        head.wait(60)


@pytest.fixture
def job_prefix(settings):
    """Job names of this test's own: a long-lived head keeps every job it ran."""
    settings.RAY_JOB_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    return settings.RAY_JOB_PREFIX


def jobs_named(address: str, prefix: str) -> list:
    from ray.job_submission import JobSubmissionClient

    return [job for job in JobSubmissionClient(address).list_jobs() if (job.submission_id or "").startswith(prefix)]


def alive_actors(address: str, job_id: str) -> list:
    from ray.util.state import list_actors

    return list_actors(address=address, filters=[("job_id", "=", job_id), ("state", "=", "ALIVE")])


def long_reward_job(model, out_dir, key: str) -> StageJob:
    """Many small steps, so the stage is still training when the test acts on it."""
    config = {**REWARD, "epochs": 100, "rankings_per_step": 2, "eval_fraction": 0.0}
    inputs = {"records": rankings(8), "model_path": str(model), "out_dir": str(out_dir), "config": config}
    return StageJob("reward", train_reward_model, inputs, key=key)


# --- a round's stage on the cluster ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.timeout(300)
def test_a_rounds_reward_model_trains_as_two_ray_train_workers_and_a_redelivery_submits_nothing(
    ray_address, job_prefix, project, model_store, tiny_model_path, admin_user, settings, tmp_path
):
    settings.SNAPSHOT_STORE, settings.RAY_ADDRESS = tmp_path / "snapshots", ray_address
    dataset_import(project=project, text=PREFERENCES, fmt="preferences", source="prefs")  # no demonstrations:
    register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)  # SFT is skipped
    round_ = rounds.round_start(project=project, config={**TINY, "execution": RAY}, actor=admin_user, enqueue=False)
    assert [runner.round_stage_run(round_id=round_.pk) for _ in range(3)] == ["snapshot", "sft", "reward"]

    round_.refresh_from_db()
    stage = round_.stages.get(name="reward")
    key = stage_key(prefix=job_prefix, round_id=round_.pk, stage="reward", attempt=1)
    assert stage.status == stage.Status.SUCCEEDED, (stage.error, stage.log)
    assert f"reward: Ray job {key}, 2 workers, on {ray_address}" in stage.log, stage.log
    assert "2 processes, gloo backend" in stage.log and f"Ray job {key}: SUCCEEDED" in stage.log
    # Worker 0's progress, as the round page's bars and curves show it.
    assert stage.step == stage.total > 0 and RoundMetric.objects.filter(stage=stage, values__has_key="loss").exists()
    folder = model_store / "projects" / str(project.pk) / f"round-{round_.number}" / "reward"
    assert [path.parent for path in model_store.rglob("model.safetensors") if "policies" not in path.parts] == [folder]
    assert round_.reward_version.path == folder and round_.reward_version.metrics["steps"] >= 1
    assert not any((model_store / RAY_JOBS).iterdir())  # the job's inputs are gone with it
    # Ray Train's process group serves the reward model as torchrun's does: the 2 workers made the
    # updates one process makes from the same rankings.
    snapshot = round_.snapshots.get(kind="ranking")
    inputs = {
        "records": load_records(snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)[0]),
        "model_path": str(tiny_model_path),
        "out_dir": str(tmp_path / "local"),
        "config": round_.config["reward"],
    }
    alone = LocalExecutor().run(StageJob("reward", train_reward_model, inputs), Recorder())
    for name in ("train_loss_first", "train_loss_last", "eval_loss"):
        assert round_.reward_version.metrics[name] == pytest.approx(alone[name], rel=1e-4), name

    # The same stage's message again (redelivered): it follows the job of that name, which ended,
    # and takes its result; no second job, and the checkpoint is not written again.
    checkpoint = folder / "model.safetensors"
    written = checkpoint.stat().st_mtime_ns
    inputs = {**inputs, "out_dir": str(folder)}
    recorder = Recorder()
    again = RayExecutor(processes=2).run(StageJob("reward", train_reward_model, inputs, key=key), recorder)
    assert again == round_.reward_version.metrics
    assert f"reward: Ray job {key} was already submitted: following it" in recorder.lines
    assert [job.submission_id for job in jobs_named(ray_address, job_prefix)] == [key]
    assert checkpoint.stat().st_mtime_ns == written


# --- cancel, a second follower, a failing worker -------------------------------------------------


@pytest.mark.timeout(300)
def test_cancelling_stops_the_job_for_every_worker_following_it(ray_address, job_prefix, tiny_model_path, tmp_path):
    """Two workers follow one stage (the second got a redelivered message): the first, whose round
    is cancelled, stops the job; the second sees it stopped. One job, ended, its actors gone."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    key = stage_key(prefix=job_prefix, round_id=1, stage="reward", attempt=1)
    job = long_reward_job(tiny_model_path, tmp_path / "reward", key)
    second, outcome = Recorder(), {}

    def follow_too():
        try:
            RayExecutor(processes=2, address=ray_address, store=tmp_path).run(job, second)
        except BaseException as error:
            outcome["second"] = error

    follower = threading.Thread(target=follow_too)

    def start_the_second_follower(recorder):
        if follower.ident is None:  # once the job is training
            follower.start()

    first = Recorder(on_progress=start_the_second_follower, stop=lambda: len(second.points) >= 2)
    with pytest.raises(TrainingCancelled, match=f"^cancelled: stopped the Ray job {key}$"):
        RayExecutor(processes=2, address=ray_address, store=tmp_path).run(job, first)
    follower.join(60)
    assert isinstance(outcome.get("second"), TrainingCancelled), outcome
    assert f"reward: Ray job {key} was already submitted: following it" in second.lines

    info = JobSubmissionClient(ray_address).get_job_info(key)
    assert info.status == JobStatus.STOPPED
    assert [job.submission_id for job in jobs_named(ray_address, job_prefix)] == [key]
    wait_until(lambda: not alive_actors(ray_address, info.job_id), seconds=30, what="the job's actors to stop")
    assert first.points[-1][0] < first.points[-1][1]  # it stopped before the last step
    assert not (tmp_path / "reward").exists() and not (tmp_path / RAY_JOBS / key).exists()


def test_a_worker_that_raises_fails_the_stage_with_its_error(ray_address, job_prefix, tiny_model_path, tmp_path):
    inputs = {
        "records": [{"prompt": "a question"}],
        "model_path": str(tiny_model_path),
        "out_dir": str(tmp_path / "rm"),
        "config": REWARD,
    }
    key = stage_key(prefix=job_prefix, round_id=1, stage="reward", attempt=1)
    recorder = Recorder()
    expected = r"^process \d of 2: ValueError: row 1: expected completions\+ranks or chosen\+rejected$"
    with pytest.raises(StageFailed, match=expected):
        RayExecutor(processes=2, address=ray_address, store=tmp_path).run(
            StageJob("reward", train_reward_model, inputs, key=key), recorder
        )
    assert "the last output of the Ray job" in recorder.lines[-1] and "ValueError: row 1" in recorder.lines[-1]
    assert f"Ray job {key}: FAILED" in recorder.lines


def test_a_retry_stops_its_earlier_attempt_still_running(ray_address, job_prefix, tiny_model_path, tmp_path):
    """A worker died mid-stage and the round was retried: the first attempt's job, still running on
    the cluster, is stopped before the second is submitted. The second asks for more workers than
    the cluster has: Ray would wait for them for ever, so the stage fails at once, saying why."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_address)
    first = stage_key(prefix=job_prefix, round_id=1, stage="reward", attempt=1)
    client.submit_job(entrypoint="sleep 600", submission_id=first)  # stands in for the orphaned stage
    wait_until(lambda: client.get_job_status(first) == JobStatus.RUNNING, seconds=60, what="the first attempt")
    second = stage_key(prefix=job_prefix, round_id=1, stage="reward", attempt=2)
    recorder = Recorder()
    with pytest.raises(StageFailed, match=r"^the Ray cluster has \d+ CPUs: run at most that many workers$"):
        RayExecutor(processes=64, address=ray_address, store=tmp_path).run(
            long_reward_job(tiny_model_path, tmp_path / "rm", second), recorder
        )
    assert client.get_job_status(first) == JobStatus.STOPPED
    assert f"stopped the Ray job {first}: an earlier attempt, still running" in recorder.lines


@pytest.mark.django_db
@pytest.mark.timeout(300)
def test_a_stale_stage_on_the_cluster_has_its_job_stopped(
    ray_address, job_prefix, project, model_store, tiny_model_path, admin_user, settings
):
    """The worker following a Ray stage died: the stale-stage check fails the stage and stops its
    job, which would otherwise train on with nobody to register what it writes."""
    from datetime import timedelta

    from django.utils import timezone
    from ray.job_submission import JobStatus, JobSubmissionClient

    from training.rounds.models import Round

    settings.RAY_ADDRESS = ray_address
    register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    round_ = rounds.round_start(project=project, config={**TINY, "execution": RAY}, actor=admin_user, enqueue=False)
    stale = timezone.now() - timedelta(seconds=settings.ROUND_STALE_SECONDS + 1)
    round_.stages.filter(name="reward").update(status="running", attempts=1, started_at=stale, heartbeat_at=stale)
    Round.objects.filter(pk=round_.pk).update(status="running")
    client = JobSubmissionClient(ray_address)
    key = stage_key(prefix=job_prefix, round_id=round_.pk, stage="reward", attempt=1)
    client.submit_job(entrypoint="sleep 600", submission_id=key)  # stands in for the orphaned stage
    wait_until(lambda: client.get_job_status(key) == JobStatus.RUNNING, seconds=60, what="the stage's job")

    assert rounds.rounds_fail_stale() == 1
    assert client.get_job_status(key) == JobStatus.STOPPED


def test_without_a_cluster_or_a_key_the_stage_fails_saying_so(tmp_path, monkeypatch):
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):  # Ray's client prefers them to its argument
        monkeypatch.delenv(name, raising=False)
    job = StageJob("reward", train_reward_model, {"records": []}, key="yushan-round1-reward-attempt1")
    with pytest.raises(StageFailed, match=r"^no Ray cluster answers at http://127.0.0.1:1 \(RAY_ADDRESS\)"):
        RayExecutor(processes=2, address="http://127.0.0.1:1", store=tmp_path).run(job, Recorder())
    job.key = ""  # the key names the job: a stage without one is a bug, not a cluster's failure
    with pytest.raises(ValueError, match="StageJob.key is empty"):
        RayExecutor(processes=2, address="http://127.0.0.1:1", store=tmp_path).run(job, Recorder())


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ray_refuses_what_torchrun_refuses(project, settings):
    refusals = {
        "config.policy.prompts_per_step": ({"prompts_per_step": 3}, "must be a multiple of the ray processes (2)"),
    }
    for key, (policy, words) in refusals.items():
        with pytest.raises(LabelingError) as refused:
            round_config_clean({"policy": policy, "execution": RAY}, project=project)
        assert words in refused.value.errors[key]
    settings.ROUND_EXECUTOR, settings.ROUND_PROCESSES = "ray", 4  # the GPU hosts' default
    assert round_config_clean(None, project=project)["execution"] == {"executor": "ray", "processes": 4}
