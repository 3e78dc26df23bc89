"""The model store in an object store (MODEL_STORE_URL): a checkpoint is uploaded completely, its
manifest last, when it is registered or a round's stage writes it; a host without a copy downloads
it before loading it; a half-uploaded folder or an unreachable store fails with a message that says
so; two processes downloading one checkpoint leave one intact copy; a Ray job's process fetches its
inputs and sends back its checkpoint through the store. Unset, nothing leaves MODEL_STORE.

The "object store" is a file:// URL in a folder of the test's own (fsspec's memory:// is one
process's), the local cache a separate MODEL_STORE.
"""

import contextlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from labeling.imports import dataset_import
from labeling.services import prompt_create
from tests.factories import DEMOS, PREFERENCES, REWARD, TINY, rankings, register_copy
from training.ml import checkpoints, launch, store
from training.ml.reward import train_reward_model
from training.ml.store import MANIFEST, CheckpointMissing, ModelStore, ModelStoreError
from training.registry import generation
from training.registry import services as registry
from training.rounds import runner
from training.rounds import services as rounds
from training.rounds.executors import RayExecutor, StageJob
from training.rounds.models import Round

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def remote(settings, tmp_path):
    """The object store: a folder reached through its file:// URL."""
    folder = tmp_path / "object-store"
    folder.mkdir()
    settings.MODEL_STORE_URL = folder.as_uri()
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_round_stages_checkpoint_is_uploaded_with_its_manifest(
    project, admin_user, model_store, remote, tiny_model_path, settings
):
    settings.SNAPSHOT_STORE = model_store.parent / "snapshots"
    dataset_import(project=project, text=DEMOS, fmt="conversations", source="demos")
    dataset_import(project=project, text=PREFERENCES, fmt="preferences", source="prefs")
    base = register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    round_ = rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)
    assert runner.round_stage_run(round_id=round_.pk) == "snapshot"
    assert runner.round_stage_run(round_id=round_.pk) == "sft"

    round_ = Round.objects.get(pk=round_.pk)
    for version in (base, round_.sft_version):
        uploaded = remote / version.storage_path
        manifest = json.loads((uploaded / MANIFEST).read_text())
        assert manifest["content_hash"] == version.content_hash
        # Every file, byte for byte; the manifest lists them and is not part of the checkpoint.
        assert {**files_of(version.path), MANIFEST: (uploaded / MANIFEST).read_bytes()} == files_of(uploaded)
        assert sorted(manifest["files"]) == sorted(files_of(version.path))
    assert round_.sft_version.storage_path.startswith(f"projects/{project.pk}/round-1/sft")


@pytest.mark.django_db
def test_a_version_missing_here_is_downloaded_before_candidate_generation_loads_it(
    project, model_store, remote, tiny_model_path
):
    version = register_copy(project, tiny_model_path, name="base", store=model_store)
    original = files_of(version.path)
    shutil.rmtree(model_store)  # another host: an empty cache

    prompt_create(project=project, messages="台灣第一高峰是那一座？", demonstration_task=False)
    job = generation.generation_job_start(
        project=project, version=version, sampling={"max_new_tokens": 4, "seed": 1}, enqueue=False
    )
    job = generation.candidates_generate(job_id=job.pk, rounds_first=False)

    assert job.status == "succeeded" and job.tasks_created == 1, job.error
    assert files_of(version.path) == original
    assert checkpoints.checkpoint_hash(version.path) == version.content_hash
    registry.model_version_verify(version=version)  # deployable from the downloaded copy


@pytest.mark.django_db
def test_a_half_uploaded_folder_is_refused_and_fails_the_job_with_that_message(
    project, model_store, remote, tiny_model_path
):
    version = register_copy(project, tiny_model_path, name="base", store=model_store)
    (remote / version.storage_path / MANIFEST).unlink()  # the upload was cut off before its end
    shutil.rmtree(version.path)

    with pytest.raises(ModelStoreError, match="incomplete"):
        registry.model_version_fetch(version)
    assert not version.path.exists() and not registry.model_version_available(version)
    with pytest.raises(registry.DeployRefused, match="missing"):
        registry.model_version_verify(version=version)

    prompt_create(project=project, messages="Hello?", demonstration_task=False)
    job = generation.generation_job_start(project=project, version=version, sampling={"seed": 1}, enqueue=False)
    with pytest.raises(ModelStoreError):
        generation.candidates_generate(job_id=job.pk, rounds_first=False)
    job.refresh_from_db()
    assert job.status == "failed" and "is incomplete" in job.error and "Traceback" not in job.error


@pytest.mark.django_db
def test_a_checkpoint_missing_remotely_or_an_unusable_store_says_so(
    project, model_store, remote, tiny_model_path, settings
):
    version = register_copy(project, tiny_model_path, name="base", store=model_store)
    shutil.rmtree(remote / version.storage_path)
    shutil.rmtree(version.path)
    with pytest.raises(CheckpointMissing, match=f"missing from the model store .*nor in {remote.as_uri()}"):
        registry.model_version_fetch(version)

    settings.MODEL_STORE_URL = "nosuchprotocol://bucket/models"
    with pytest.raises(ModelStoreError, match="MODEL_STORE_URL nosuchprotocol://bucket/models cannot be used"):
        registry.model_version_fetch(version)
    with pytest.raises(registry.DeployRefused, match="cannot be read"):
        registry.model_version_verify(version=version)


def test_two_processes_downloading_one_checkpoint_leave_one_intact_copy(tmp_path, tiny_model_path):
    origin = ModelStore(root=tmp_path / "writer", url=(tmp_path / "object-store").as_uri())
    shutil.copytree(tiny_model_path, origin.root / "base" / "tiny")
    origin.publish(origin.root / "base" / "tiny", content_hash=checkpoints.checkpoint_hash(tiny_model_path))
    cache = tmp_path / "reader"
    fetch = (
        "import sys; from pathlib import Path; from training.ml.store import ModelStore; "
        "ModelStore(root=Path(sys.argv[1]), url=sys.argv[2]).fetch(Path(sys.argv[1]) / 'base' / 'tiny')"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", fetch, str(cache), origin.url], cwd=ROOT, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    assert [process.wait(60) for process in processes] == [0, 0], [p.stderr.read() for p in processes]
    assert files_of(cache / "base" / "tiny") == files_of(tiny_model_path)
    assert sorted(path.name for path in (cache / "base").iterdir()) == [".tiny.lock", "tiny"]  # no half copy left


def test_without_the_lock_the_rename_still_leaves_one_intact_copy(tmp_path, tiny_model_path, monkeypatch):
    """Two hosts on one shared cache whose filesystem has no working locks: both download, one
    rename wins, the other's copy is thrown away."""
    origin = ModelStore(root=tmp_path / "writer", url=(tmp_path / "object-store").as_uri())
    shutil.copytree(tiny_model_path, origin.root / "tiny")
    origin.publish(origin.root / "tiny")
    both_downloaded = threading.Barrier(2)
    real_download = ModelStore._download

    def download_together(self, path, manifest, local):
        both_downloaded.wait(10)  # both have found no copy; now both download
        real_download(self, path, manifest, local)

    monkeypatch.setattr(store, "_locked", lambda folder: contextlib.nullcontext())
    monkeypatch.setattr(ModelStore, "_download", download_together)
    cache = ModelStore(root=tmp_path / "reader", url=origin.url)
    fetched = []
    threads = [threading.Thread(target=lambda: fetched.append(cache.fetch(cache.root / "tiny"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert fetched == [cache.root / "tiny"] * 2
    assert files_of(cache.root / "tiny") == files_of(tiny_model_path)
    assert [path.name for path in cache.root.iterdir() if path.is_dir()] == ["tiny"]


@pytest.mark.django_db
def test_without_a_url_nothing_is_uploaded(project, model_store, settings, tmp_path, tiny_model_path):
    settings.MODEL_STORE_URL = ""
    watched = tmp_path / "object-store"
    watched.mkdir()
    version = register_copy(project, tiny_model_path, name="base", store=model_store)
    assert list(watched.iterdir()) == [] and not registry.model_store().published(version.path)
    assert registry.model_version_fetch(version) == version.path
    shutil.rmtree(version.path)
    with pytest.raises(CheckpointMissing, match="missing from the model store"):
        registry.model_version_fetch(version)


@pytest.mark.django_db
def test_a_ray_worker_fetches_its_inputs_and_sends_its_checkpoint_back_through_the_store(
    project, model_store, remote, tiny_model_path, tmp_path, monkeypatch, settings
):
    """What a Ray Train worker on a node sharing no filesystem with the gpu worker does (Ray itself is
    tests/test_ray_executor.py's): the gpu worker's side submits through the object store, the node
    keeps its copies under its own MODEL_STORE, and the checkpoint it writes is registered from there."""
    base = register_copy(project, tiny_model_path, name="base", store=model_store)
    out_dir = model_store / "projects" / str(project.pk) / "round-1" / "reward"
    job = StageJob(
        "reward",
        train_reward_model,
        {"records": rankings(6), "model_path": str(base.path), "out_dir": str(out_dir), "config": REWARD},
        key="yushan-round1-reward-attempt1",
    )
    executor = RayExecutor(processes=1, address="http://127.0.0.1:1")
    submitted = {}

    class Client:
        def submit_job(self, **arguments):
            submitted.update(arguments)

    folder = model_store / "ray-jobs" / job.key
    executor._submit(Client(), job, folder)
    assert submitted["runtime_env"]["env_vars"] == {
        store.ENV_URL: remote.as_uri(),
        store.ENV_ORIGIN: str(model_store),
    }
    assert (remote / "ray-jobs" / job.key / launch.SPEC).is_file()

    node = tmp_path / "node-store"  # the Ray node's own cache
    monkeypatch.setenv("MODEL_STORE", str(node))
    for name, value in submitted["runtime_env"]["env_vars"].items():
        monkeypatch.setenv(name, value)
    launch._ray_worker({"folder": str(folder)})

    assert (node / base.storage_path).is_dir()  # the input, downloaded to the node
    assert json.loads((remote / "ray-jobs" / job.key / launch.RESULT).read_text())["steps"] >= 1
    progress = (remote / "ray-jobs" / job.key / launch.PROGRESS).read_text().splitlines()
    assert any("step" in json.loads(line) for line in progress)
    uploaded = json.loads((remote / out_dir.relative_to(model_store) / MANIFEST).read_text())
    assert not out_dir.exists()  # the gpu worker has no copy until it registers the checkpoint

    settings.MODEL_STORE = model_store
    version, _ = registry.model_version_register(project=project, path=out_dir, name="reward", kind="reward")
    assert version.content_hash == uploaded["content_hash"] == checkpoints.checkpoint_hash(node / version.storage_path)
    again = json.loads((remote / out_dir.relative_to(model_store) / MANIFEST).read_text())
    assert again["uploaded_at"] == uploaded["uploaded_at"]  # already there: not uploaded twice
