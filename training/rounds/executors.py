"""Stage executors: where a round's training stages (SFT, reward model, policy) run.

- `local`: in the worker's own process, as one process (the `make run` default).
- `torchrun`: the worker starts the stage as N data-parallel processes on its host
  (`python -m training.ml.launch --torchrun N`, torchrun's agent in a process of its own) and
  follows them: process 0's progress becomes the stage's, a cancel stops every process, and one
  process failing fails the stage with that process's error.
- `ray`: the worker submits the stage to a Ray cluster as a Ray job (`python -m
  training.ml.launch --ray N`: N Ray Train workers across the cluster's nodes) named by the stage
  attempt, and follows it the same way: a redelivered message finds the job by its name and
  follows it instead of submitting another, and a cancel stops the job.

All call the same ML function with the same arguments (training.ml.launch.stage_call); an
executor only decides where. A new one is a class with `run(job, reporter) -> metrics` in
EXECUTORS.

The reporter is training.rounds.runner.StageReporter: progress(step, total, metrics),
should_stop() and log(line).
"""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from training.ml import launch
from training.ml.common import TrainingCancelled
from training.ml.store import ModelStore, ModelStoreError

ROOT = Path(__file__).resolve().parents[2]  # the folder `python -m training.ml.launch` runs from
POLL_SECONDS = 0.25
STOP_SECONDS = 30  # after SIGTERM, how long the processes get before SIGKILL
LOG_TAIL_CHARS = 3000
RAY_JOBS = "ray-jobs"  # under the model store: each Ray job's inputs and progress, while it runs
RAY_POLL_SECONDS = 0.5  # the job's status is a request to the Ray dashboard
RAY_UNREACHABLE_SECONDS = 60  # a dashboard silent this long (not a moment's blip) fails the stage
RAY_PROGRESS_SECONDS = 2.0  # with MODEL_STORE_URL: how often the job's progress is read from the object store
RAY_PROGRESS_COPY = "progress-received.jsonl"  # where it is copied to, beside the job's own (a shared mount's)


@dataclass
class StageJob:
    """One training stage's work: its ML function and the inputs it is called with, JSON-ready so
    an executor can hand them to other processes (records, model paths, out_dir, the config as a
    dict; see training.ml.launch.stage_call)."""

    stage: str  # "sft", "reward" or "policy"
    function: Callable[..., dict]  # training.ml.sft.train_sft, …: called as it is, or imported by name
    inputs: dict
    key: str = ""  # the stage attempt's name (stage_key): the Ray job's submission id


def stage_key(*, prefix: str, round_id: int, stage: str, attempt: int) -> str:
    """The name of one attempt at a round's stage: the same for a redelivered message, another for
    a retry ("yushan-round7-reward-attempt2"). The prefix tells apart installations sharing a cluster."""
    return f"{prefix}-round{round_id}-{stage}-attempt{attempt}"


class Reporter(Protocol):
    def progress(self, step: int, total: int, metrics: dict) -> None: ...
    def should_stop(self) -> bool: ...
    def log(self, line: str) -> None: ...


class StageFailed(RuntimeError):
    """A stage's processes failed; the message is the failing process's own error."""


class LocalExecutor:
    """The stage in this process, on this process's device."""

    name = "local"

    def __init__(self, processes: int = 1):
        self.processes = 1  # the worker's own, whatever the settings say

    def run(self, job: StageJob, reporter: Reporter) -> dict:
        return launch.stage_call(
            job.function, job.stage, job.inputs, progress=reporter.progress, should_stop=reporter.should_stop
        )


class TorchrunExecutor:
    """The stage as `processes` data-parallel processes on this host, one per GPU (gloo on CPUs)."""

    name = "torchrun"

    def __init__(self, processes: int):
        self.processes = processes
        self.folder: Path | None = None  # the running stage's spec folder

    def run(self, job: StageJob, reporter: Reporter) -> dict:
        with tempfile.TemporaryDirectory(prefix=f"yushan-{job.stage}-") as folder:
            self.folder = Path(folder)
            try:
                return self._run(job, reporter)
            finally:
                self.folder = None

    def _run(self, job: StageJob, reporter: Reporter) -> dict:
        write_spec(job, self.folder)
        reporter.log(f"{job.stage}: torchrun, {self.processes} processes")
        with (self.folder / "output.log").open("wb") as output:
            agent = subprocess.Popen(
                [sys.executable, "-m", "training.ml.launch", "--torchrun", str(self.processes), str(self.folder)],
                cwd=ROOT,
                env=self._environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a signal to the worker's group is not one to the stage
            )
            try:
                self._follow(agent, reporter)
            except BaseException:
                self._stop(agent)
                raise
        if agent.returncode != 0:
            reporter.log(f"the last output of the stage's processes:\n{self._output_tail()}")
            raise StageFailed(self._failure())
        return json.loads((self.folder / launch.RESULT).read_text(encoding="utf-8"))

    def _environment(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["YUSHAN_LAUNCH_PARENT"] = str(os.getpid())
        # The host's cores shared out (torchrun would give each process one).
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.processes)))
        return env

    def _follow(self, agent: subprocess.Popen, reporter: Reporter) -> None:
        """Turn process 0's progress lines into the stage's until the processes end; stop them
        all when the round is cancelled."""
        lines = _LineReader(self.folder / launch.PROGRESS)
        while agent.poll() is None:
            _report(lines.read(), reporter)
            if reporter.should_stop():
                raise TrainingCancelled(f"cancelled: stopped the stage's {self.processes} processes")
            time.sleep(POLL_SECONDS)
        _report(lines.read(), reporter)

    def _stop(self, agent: subprocess.Popen) -> None:
        """SIGTERM to the agent, which stops its processes; SIGKILL to all that remain after STOP_SECONDS."""
        if agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        for pid in self.rank_pids():
            if _is_stage_process(pid):  # one that outlived the agent (its pid is still its own)
                os.kill(pid, signal.SIGKILL)

    def rank_pids(self) -> list[int]:
        """The running stage's processes (those started so far), by rank."""
        if self.folder is None:
            return []
        files = sorted(self.folder.glob("pid-*"), key=lambda path: int(path.name.split("-")[1]))
        return [int(path.read_text()) for path in files if path.read_text().strip()]

    def _failure(self) -> str:
        """The failing process's own error (training.ml.launch.root_failure), else torchrun's last words."""
        failure = self.folder / launch.FAILURE
        if failure.exists():
            entry = json.loads(failure.read_text(encoding="utf-8"))
            return f"process {entry['rank']} of {self.processes}: {entry['message']}"
        return f"torchrun failed: {self._output_tail()}"

    def _output_tail(self) -> str:
        """The end of what the processes printed (a traceback, torchrun's summary)."""
        output = (self.folder / "output.log").read_bytes()[-LOG_TAIL_CHARS:]
        return output.decode("utf-8", "replace").strip()


class RayExecutor:
    """The stage as `processes` Ray Train workers on the Ray cluster whose dashboard (the Jobs API)
    is at settings.RAY_ADDRESS, one GPU each where it has GPUs. The job's inputs and progress go
    through a folder of the model store (settings.MODEL_STORE), which every node mounts at the same
    path, as the checkpoints do; or, with an object store (settings.MODEL_STORE_URL), through the
    same folder there: the job's processes learn its URL from their environment, download what
    they read and upload what they write (training.ml.launch). The code goes with the job (the
    `training` package)."""

    name = "ray"

    def __init__(
        self,
        processes: int,
        *,
        address: str | None = None,
        store: str | os.PathLike | None = None,
        store_url: str | None = None,
    ):
        from django.conf import settings

        self.processes = processes
        self.address = (address or settings.RAY_ADDRESS).rstrip("/")
        self.store = Path(store or settings.MODEL_STORE)
        url = settings.MODEL_STORE_URL if store_url is None else store_url
        self.remote = ModelStore(root=self.store, url=url) if url else None  # None: a shared mount

    def run(self, job: StageJob, reporter: Reporter) -> dict:
        from ray.job_submission import JobSubmissionClient

        if not job.key:
            raise ValueError("the ray executor names its job by the stage attempt: StageJob.key is empty")
        try:
            client = JobSubmissionClient(self.address)
        except ConnectionError as error:
            raise StageFailed(f"no Ray cluster answers at {self.address} (RAY_ADDRESS): {error}") from None
        folder = self.store / RAY_JOBS / job.key
        if self._info(client, job.key) is None:
            self._stop_earlier_attempts(client, job.key, reporter)
            self._submit(client, job, folder)
            reporter.log(f"{job.stage}: Ray job {job.key}, {self.processes} workers, on {self.address}")
        else:  # a redelivered message, or a second worker: the job is the same, follow it
            reporter.log(f"{job.stage}: Ray job {job.key} was already submitted: following it")
        reporter.log(f"Ray's dashboard shows its logs: {self.address}/#/jobs/{job.key}")
        try:
            status = self._follow(client, job.key, folder, reporter)
        except BaseException:
            if self._stop(client, job.key):
                self._remove(folder)
            raise
        self._remove(folder)  # the job has ended: its outcome is in its logs
        return self._outcome(client, job.key, status, reporter)

    def _submit(self, client, job: StageJob, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_spec(job, folder)
        # This worker's code, so the cluster runs the version that wrote the spec.
        runtime_env = {"py_modules": [str(ROOT / "training")], "excludes": ["__pycache__"]}
        if self.remote is not None:  # no shared mount: the spec reaches the nodes through the object store
            for name in (launch.SPEC, "records.jsonl"):
                self.remote.put_file(folder / name)
            runtime_env["env_vars"] = self.remote.environment()
        try:
            client.submit_job(
                entrypoint=f"python -m training.ml.launch --ray {self.processes} {shlex.quote(str(folder))}",
                submission_id=job.key,
                runtime_env=runtime_env,
                metadata={"stage": job.stage},
            )
        except RuntimeError as error:  # another worker submitted it since we looked: follow that one
            if "already exists" not in str(error):
                raise

    def _follow(self, client, key: str, folder: Path, reporter: Reporter):
        """Turn process 0's progress lines into the stage's until the job ends; stop it when the
        round is cancelled. Returns the job's last status."""
        lines = _LineReader(folder / (launch.PROGRESS if self.remote is None else RAY_PROGRESS_COPY))
        seen, received = None, 0.0
        while True:
            status = self._info(client, key, required=True).status
            if status != seen:
                reporter.log(f"Ray job {key}: {status.value}")
                seen = status
            if self.remote is not None and (
                status.is_terminal() or time.monotonic() - received >= RAY_PROGRESS_SECONDS
            ):
                self._receive_progress(folder, lines.path)
                received = time.monotonic()
            _report(lines.read(), reporter)
            if status.is_terminal():
                return status
            if reporter.should_stop():
                raise TrainingCancelled(f"cancelled: stopped the Ray job {key}")
            time.sleep(RAY_POLL_SECONDS)

    def _outcome(self, client, key: str, status, reporter: Reporter) -> dict:
        from ray.job_submission import JobStatus

        logs = client.get_job_logs(key)
        if status == JobStatus.STOPPED:
            raise TrainingCancelled(f"cancelled: the Ray job {key} was stopped")
        if status == JobStatus.SUCCEEDED and (metrics := _marked(logs, launch.RESULT_LINE)) is not None:
            return metrics
        reporter.log(f"the last output of the Ray job:\n{logs[-LOG_TAIL_CHARS:].strip()}")
        failure = _marked(logs, launch.FAILURE_LINE)
        if failure is not None:
            raise StageFailed(failure["message"])
        # The driver never got to say: it could not start (no such module on the cluster, say).
        last = [line for line in logs.splitlines() if line.strip()][-1:] or [self._info(client, key).message]
        raise StageFailed(f"the Ray job {key} {status.value.lower()}: {last[0].strip()}")

    def _receive_progress(self, folder: Path, copy: Path) -> None:
        """Worker 0's progress file, as far as it has sent it to the object store, into `copy`."""
        # A blip is not the stage's failure: the next read catches up, and the outcome is in the logs.
        with contextlib.suppress(ModelStoreError):
            self.remote.get_file(folder / launch.PROGRESS, into=copy, missing_ok=True)

    def _remove(self, folder: Path) -> None:
        """The job's folder, here and in the object store (best effort: the stage's own outcome matters more)."""
        shutil.rmtree(folder, ignore_errors=True)
        if self.remote is not None:
            with contextlib.suppress(ModelStoreError):
                self.remote.unpublish(folder)

    def _stop_earlier_attempts(self, client, key: str, reporter: Reporter) -> None:
        """A retried stage's earlier attempt may still run on the cluster (its worker died, and the
        stale-stage check failed the stage): stop it, so that two attempts never write one checkpoint."""
        base, _, attempt = key.rpartition("-attempt")
        for earlier in range(1, int(attempt) if attempt.isdigit() else 1):
            if not self._finished(client, f"{base}-attempt{earlier}"):
                self._stop(client, f"{base}-attempt{earlier}")
                reporter.log(f"stopped the Ray job {base}-attempt{earlier}: an earlier attempt, still running")

    def _stop(self, client, key: str) -> bool:
        """stop_job (SIGTERM to the driver, whose end stops its workers; SIGKILL a few seconds on),
        then wait for the job to end; True once it has. Best effort: it runs while another error
        (the cancel itself, the dashboard gone) is on its way up, and must not replace it."""
        with contextlib.suppress(RuntimeError, OSError):  # requests' errors are OSErrors
            client.stop_job(key)
            deadline = time.monotonic() + STOP_SECONDS
            while time.monotonic() < deadline:
                if self._finished(client, key):
                    return True
                time.sleep(RAY_POLL_SECONDS)
        return False

    def _finished(self, client, key: str) -> bool:
        """True when no job of that name is running (ended, or never submitted)."""
        info = self._info(client, key)
        return info is None or info.status.is_terminal()

    def _info(self, client, key: str, *, required: bool = False):
        """The job's JobDetails, or None when there is none of that name. A dashboard that does not
        answer is waited for RAY_UNREACHABLE_SECONDS (a restart, a network blip), then fails the stage."""
        import requests

        deadline = time.monotonic() + RAY_UNREACHABLE_SECONDS
        while True:
            try:
                return client.get_job_info(key)
            except RuntimeError as error:  # the Jobs API's answer to anything but 200
                if "status code 404" not in str(error):
                    raise
                if required:
                    raise StageFailed(
                        f"the Ray cluster at {self.address} has no job {key}: was it restarted?"
                    ) from None
                return None
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise StageFailed(
                        f"the Ray cluster at {self.address} has not answered for {RAY_UNREACHABLE_SECONDS} s"
                    ) from None
                time.sleep(1)


def _marked(logs: str, mark: str) -> dict | None:
    """The JSON after the last line of the logs that starts with `mark` (training.ml.launch.run_ray's outcome)."""
    for line in reversed(logs.splitlines()):
        if line.startswith(mark):
            return json.loads(line[len(mark) :])
    return None


def write_spec(job: StageJob, folder: Path) -> None:
    """The job's inputs as training.ml.launch reads them: spec.json, and its records in a file of their own."""
    inputs = dict(job.inputs)
    records = folder / "records.jsonl"
    with records.open("w", encoding="utf-8") as handle:
        for row in inputs["records"]:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    inputs["records"] = str(records)
    spec = {"stage": job.stage, "function": launch.function_name(job.function), "inputs": inputs}
    (folder / launch.SPEC).write_text(json.dumps(spec), encoding="utf-8")


def _is_stage_process(pid: int) -> bool:
    try:
        return b"training.ml.launch" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class _LineReader:
    """The complete lines appended to a file since the last read."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, b""

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def _report(entries: list[dict], reporter: Reporter) -> None:
    for entry in entries:
        if "log" in entry:
            reporter.log(entry["log"])
        else:
            reporter.progress(entry["step"], entry["total"], entry["metrics"])


def ray_job_stop(key: str) -> bool:
    """Stop the Ray job of a stage whose worker died (the stale-stage check): best effort, True once
    no job of that name runs. Without it the job would run on until a retry stopped it."""
    from ray.job_submission import JobSubmissionClient

    executor = RayExecutor(processes=1)
    try:
        client = JobSubmissionClient(executor.address)
    except (RuntimeError, OSError, ValueError):
        return False
    return executor._finished(client, key) or executor._stop(client, key)


EXECUTORS = {"local": LocalExecutor, "torchrun": TorchrunExecutor, "ray": RayExecutor}


def executor_for(execution: dict | None):
    """The executor a round's `execution` settings name (rounds from before them: local)."""
    execution = execution or {"executor": "local", "processes": 1}
    return EXECUTORS[execution["executor"]](processes=execution.get("processes", 1))
