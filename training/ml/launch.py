"""A training stage as N data-parallel processes: on one host under torchrun, or on a Ray cluster
under Ray Train.

    python -m training.ml.launch --torchrun N FOLDER        # what a worker starts: torchrun's agent
    torchrun --nproc-per-node N -m training.ml.launch FOLDER  # the same, by hand
    python -m training.ml.launch --ray N FOLDER             # a Ray job's driver: N Ray Train workers

FOLDER holds `spec.json`, written by whoever launches (training.rounds.executors):

    {"stage": "reward", "function": "training.ml.reward:train_reward_model",
     "inputs": {"records": "records.jsonl", "model_path": ..., "out_dir": ..., "config": {...}}}

Each process joins the process group (gloo on CPUs, NCCL with one GPU each: torchrun's, or the one
Ray Train sets up) and calls the stage's function with the arguments `stage_call` builds from the
inputs: the very call a worker makes in-process. Process 0 alone writes progress (`progress.jsonl`,
one JSON object a line: {"step", "total", "metrics"} or {"log"}) and the result (`result.json`);
the checkpoint is written by process 0 inside the function. A process that raises writes
`error-RANK.json` first, so the launcher can show that process's error rather than the others'
broken connections. Under Ray, FOLDER and the model paths are on the model store that every node
mounts at the same path; or, where the job's environment names an object store (training.ml.store:
MODEL_STORE_URL on the gpu worker that submitted it), each node downloads FOLDER's inputs and the
models it reads from there, and sends back what it writes (progress, outcome, the checkpoint).

No Django here: the processes read files and write files.
"""

import argparse
import contextlib
import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from training.ml import distributed
from training.ml.common import load_records, never_stop
from training.ml.store import ModelStore

SPEC = "spec.json"
PROGRESS = "progress.jsonl"
RESULT = "result.json"
FAILURE = "failure.json"  # written by the agent: which process failed first, and how
PROGRESS_UPLOAD_SECONDS = 2.0  # with an object store: how often process 0 sends its progress there
MODEL_INPUTS = ("model_path", "reward_model_path")  # the inputs that are checkpoints of the model store


def stage_call(function, stage: str, inputs: dict, *, progress, should_stop) -> dict:
    """Call a stage's ML function on JSON-ready inputs: records (a list, or a file of them), the
    model paths, out_dir and the config as a dict."""
    records = inputs["records"]
    if not isinstance(records, list):
        records = load_records(records)
    callbacks = {"progress": progress, "should_stop": should_stop}
    if stage == "sft":
        from training.ml.sft import SFTStageConfig

        config = SFTStageConfig(**inputs["config"])
        return function(records, inputs["model_path"], inputs["out_dir"], config, **callbacks)
    if stage == "reward":
        from training.ml.reward import RewardConfig, rankings_from_records

        config = RewardConfig(**inputs["config"])
        return function(rankings_from_records(records), inputs["model_path"], inputs["out_dir"], config, **callbacks)
    if stage == "policy":
        from training.ml.policy_config import PolicyConfig

        config = PolicyConfig(**inputs["config"])
        model_path, reward_model_path = inputs["model_path"], inputs.get("reward_model_path")
        return function(records, model_path, reward_model_path, inputs["out_dir"], config, **callbacks)
    raise ValueError(f"no stage {stage!r}: sft, reward or policy")


def function_name(function) -> str:
    """The function's import name, module:qualified.name, which import_function reads in another process."""
    return f"{function.__module__}:{function.__qualname__}"


def import_function(name: str):
    module, _, path = name.partition(":")
    target = importlib.import_module(module)
    for part in path.split("."):
        target = getattr(target, part)
    return target


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies, so a stage's processes do
    not outlive a worker that was killed (elsewhere: nothing; the stale-stage check still holds)."""
    if not sys.platform.startswith("linux"):
        return
    parent = int(os.environ.get("YUSHAN_LAUNCH_PARENT", "0"))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(sig))  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), sig)


class _ProgressFile:
    """progress(step, total, metrics) as JSON lines, written by process 0 only; with an object
    store, sent there every PROGRESS_UPLOAD_SECONDS (and by flush)."""

    def __init__(self, path: Path, store: ModelStore | None = None):
        self.path, self.store, self.sent = path, store, 0.0
        self.handle = path.open("a", encoding="utf-8") if distributed.is_main() else None

    def write(self, entry: dict) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps(entry) + "\n")
            self.handle.flush()
            if self.store is not None and time.monotonic() - self.sent >= PROGRESS_UPLOAD_SECONDS:
                self.flush()

    def flush(self) -> None:
        if self.handle is not None and self.store is not None:
            self.store.put_file(self.path)
            self.sent = time.monotonic()

    def progress(self, step: int, total: int, metrics: dict) -> None:
        self.write({"step": step, "total": total, "metrics": metrics})


def run_process(folder: Path) -> None:
    """One of torchrun's processes: join the group, run the stage, leave the result."""
    die_with_parent()
    rank = int(os.environ.get("RANK", "0"))
    (folder / f"pid-{rank}").write_text(str(os.getpid()))
    try:
        with _error_recorded(folder, rank):
            backend = distributed.init_from_environment()
            run_stage(folder, backend)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def run_stage(folder: Path, backend: str | None, store: ModelStore | None = None) -> None:
    """The stage of folder's spec, in this process of a group that is set up (or alone). Process 0
    alone writes progress and the result. With `store` (an object store, under Ray), the inputs
    are fetched from it first, and the checkpoint and the result go back to it."""
    if store is not None:
        store.get_file(folder / SPEC)
    spec = json.loads((folder / SPEC).read_text(encoding="utf-8"))
    inputs = spec["inputs"] if store is None else _inputs_fetched(spec["inputs"], store)
    progress = _ProgressFile(folder / PROGRESS, store)
    progress.write({"log": f"{distributed.world_size()} processes, {backend or 'no'} backend"})
    metrics = stage_call(
        import_function(spec["function"]),
        spec["stage"],
        inputs,
        progress=progress.progress,
        should_stop=never_stop,  # a cancel stops every process at once, from the launcher
    )
    if distributed.is_main():
        if store is not None:  # complete in the object store before the stage counts as done
            from training.ml.checkpoints import checkpoint_hash

            store.publish(inputs["out_dir"], content_hash=checkpoint_hash(inputs["out_dir"]))
        (folder / RESULT).write_text(json.dumps(metrics), encoding="utf-8")
        if store is not None:
            progress.flush()
            store.put_file(folder / RESULT)


def _inputs_fetched(inputs: dict, store: ModelStore) -> dict:
    """The spec's inputs with their paths on this node: the records and the models downloaded from
    the object store where this node has no copy, out_dir where this node writes it."""
    inputs = {
        **inputs,
        "records": str(store.get_file(inputs["records"])),
        "out_dir": str(store.local(inputs["out_dir"])),
    }
    for key in MODEL_INPUTS:
        if inputs.get(key):
            inputs[key] = str(store.fetch(inputs[key]))
    return inputs


@contextlib.contextmanager
def _error_recorded(folder: Path, rank: int, store: ModelStore | None = None):
    """A process that raises leaves `error-RANK.json` first (in the object store too, with `store`):
    the launcher shows the error of the process that failed first, not the others' broken connections."""
    try:
        yield
    except BaseException as error:
        entry = {"error": f"{type(error).__name__}: {error}", "time": time.time(), "traceback": traceback.format_exc()}
        (folder / f"error-{rank}.json").write_text(json.dumps(entry), encoding="utf-8")
        if store is not None:
            with contextlib.suppress(OSError):  # the error itself may be the store's: keep it
                store.put_file(folder / f"error-{rank}.json")
        raise


def run_agent(folder: Path, processes: int) -> int:
    """torchrun's agent, in this process: `processes` processes of run_process on this host. It
    stops them all when one fails or when it is sent SIGTERM, and dies (SIGTERM) with its parent."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    die_with_parent(signal.SIGTERM)
    os.environ["YUSHAN_LAUNCH_PARENT"] = str(os.getpid())  # the processes' parent, for die_with_parent
    arguments = ["--standalone", f"--nproc-per-node={processes}", "--max-restarts=0"]
    try:
        torchrun([*arguments, "-m", "training.ml.launch", str(folder)])
    except ChildFailedError as error:
        rank, message = root_failure(folder, error.failures)
        (folder / FAILURE).write_text(json.dumps({"rank": rank, "message": message}), encoding="utf-8")
        return 1
    return 0


def root_failure(folder: Path, failures: dict) -> tuple[int, str]:
    """(rank, what happened) of the process whose failure made the others fail: one killed by a
    signal (the agent itself stops the rest with SIGTERM), else the earliest to raise. One process
    dying makes the others raise too ("Connection closed by peer"): theirs are not the cause."""
    killed = {rank: f for rank, f in failures.items() if f.exitcode < 0 and -f.exitcode != signal.SIGTERM}
    if killed:
        rank = min(killed)
        return rank, f"killed by {_signal_name(-killed[rank].exitcode)}"
    errors = {}
    for rank in failures:
        path = folder / f"error-{rank}.json"
        if path.exists():
            errors[rank] = json.loads(path.read_text(encoding="utf-8"))
    if errors:
        rank = min(errors, key=lambda r: errors[r]["time"])
        return rank, errors[rank]["error"]
    rank = min(failures, key=lambda r: failures[r].timestamp)
    code = failures[rank].exitcode
    return rank, f"killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- on a Ray cluster ------------------------------------------------------------------------------

RESULT_LINE = "yushan-result: "  # the Ray driver's last line: the metrics, or
FAILURE_LINE = "yushan-failure: "  # which worker failed and how (JSON after the mark)


def run_ray(folder: Path, workers: int) -> int:
    """The driver of a Ray job (`python -m training.ml.launch --ray N FOLDER`, which the ray executor
    submits): N Ray Train workers, one GPU each where the cluster has GPUs (else one CPU each), each
    running the stage as one of torchrun's processes does, in the process group Ray Train sets up
    (NCCL on GPUs, gloo on CPUs). FOLDER is on the model store, which every node mounts, or in the
    object store of the job's environment (ModelStore.from_environment). The outcome leaves as the
    last line of the job's logs, so that whoever follows the job reads it there."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    store = ModelStore.from_environment()
    local = folder  # the driver's copy of FOLDER; the workers are given FOLDER as the spec names it
    storage = {"storage_path": str(folder / "ray-train")}  # on the shared store, as Ray Train wants across nodes
    if store is not None:
        path, filesystem = store.arrow_location(folder / "ray-train")
        storage = {"storage_path": path, "storage_filesystem": filesystem}
        local = store.local(folder)
        local.mkdir(parents=True, exist_ok=True)
    ray.init()
    resources = ray.cluster_resources()
    use_gpu = resources.get("GPU", 0) >= 1
    unit = "GPU" if use_gpu else "CPU"
    if workers > resources.get(unit, 0):
        # Ray would wait for them for ever; an autoscaling cluster is not waited for either.
        message = f"the Ray cluster has {int(resources.get(unit, 0))} {unit}s: run at most that many workers"
        return _ray_outcome(FAILURE_LINE, {"message": message})
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"folder": str(folder)},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=folder.name,
            failure_config=FailureConfig(max_failures=0),  # a failed stage is retried by the admin
            **storage,
        ),
    )
    try:
        trainer.fit()
    except Exception as error:  # ray.train's TrainingFailedError: a worker raised, or died
        if store is not None:
            with contextlib.suppress(OSError):
                store.get_files(folder, "error-*.json")
        rank, message = ray_failure(local, error)
        where = f"process {rank} of {workers}" if rank is not None else "Ray Train"
        return _ray_outcome(FAILURE_LINE, {"message": f"{where}: {message}"})
    if store is not None:
        store.get_file(folder / RESULT)
    return _ray_outcome(RESULT_LINE, json.loads((local / RESULT).read_text(encoding="utf-8")))


def _ray_worker(config: dict) -> None:
    """One Ray Train worker (a Ray actor): the process group is Ray Train's, set up before this runs."""
    import torch.distributed as dist

    store = ModelStore.from_environment()
    folder = Path(config["folder"]) if store is None else store.local(config["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    with _error_recorded(folder, int(os.environ.get("RANK", "0")), store):
        run_stage(folder, dist.get_backend() if dist.is_initialized() else None, store)


def ray_failure(folder: Path, error: BaseException) -> tuple[int | None, str]:
    """(rank, what happened) of the worker that failed first: the earliest to raise, else (a worker
    killed, its node lost) the last line of Ray's own account, with no rank."""
    errors = {}
    for path in folder.glob("error-*.json"):
        errors[int(path.stem.split("-")[1])] = json.loads(path.read_text(encoding="utf-8"))
    if errors:
        rank = min(errors, key=lambda r: errors[r]["time"])
        return rank, errors[rank]["error"]
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return None, lines[-1] if lines else type(error).__name__


def _ray_outcome(mark: str, value: dict) -> int:
    print(mark + json.dumps(value), flush=True)
    return 1 if mark == FAILURE_LINE else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A training stage in data-parallel processes (torchrun or Ray Train).")
    parser.add_argument("folder", type=Path, help=f"the folder holding {SPEC}")
    starts = parser.add_mutually_exclusive_group()
    starts.add_argument(
        "--torchrun", type=int, metavar="N", help="start N processes on this host (else: be one of torchrun's)"
    )
    starts.add_argument("--ray", type=int, metavar="N", help="run N Ray Train workers on the Ray cluster of this job")
    args = parser.parse_args(argv)
    if args.torchrun:
        return run_agent(args.folder, args.torchrun)
    if args.ray:
        # By its import name, not as __main__: Ray then sends the workers' function by reference.
        return importlib.import_module("training.ml.launch").run_ray(args.folder, args.ray)
    run_process(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
