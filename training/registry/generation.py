"""Writes for candidate generation: a job samples K answers per prompt from a policy version and
turns them into ranking tasks, with lineage on every answer.

The job row is claimed with a conditional UPDATE and fenced by its `attempts`, so a redelivered
message does no harm; sampling happens outside transactions, each batch's tasks in short ones.

Rounds go first on the gpu queue: a job that finds a round's next stage waiting (when it starts,
and every few seconds while it samples) puts itself back in the queue, behind that stage, and
resumes with the prompts it has not reached. It pauses once per stage: if that stage is still
waiting when the job comes back (its message was lost, or no worker serves it), the job runs on.
"""

import random
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext

from labeling import services as labeling_services
from labeling.errors import Conflict, LabelingError
from labeling.events import event_record
from labeling.models import Project, Prompt
from training.ml import options
from training.ml.generation import Sample, SamplingParams, default_cpu_threads, generator_for, vllm_usable
from training.registry import selectors
from training.registry.models import Deployment, GeneratedTask, GenerationJob, ModelVersion
from training.registry.services import model_version_fetch
from training.rounds.config import settings_errors, settings_problems
from worker.queue import enqueue

# A mild repetition penalty: the 135M base otherwise often loops until max_new_tokens, which
# gives annotators nothing to judge and holds up the whole batch.
JOB_SAMPLING_DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.1}


def sampling_params_from(raw: dict | None) -> SamplingParams:
    """A job's sampling settings over the defaults, checked against SamplingParams' declared types
    and ranges (an infinite temperature, say, would not even store in a JSON column)."""
    defaults = {
        **JOB_SAMPLING_DEFAULTS,
        "max_new_tokens": settings.GENERATION_MAX_NEW_TOKENS,
        "seed": random.randrange(2**31),
    }
    try:
        return SamplingParams(**options.settings_validate(SamplingParams, raw, where="sampling", defaults=defaults))
    except options.SettingsError as error:
        errors = settings_errors(error)
        raise LabelingError(
            gettext("Invalid sampling parameters: %(problems)s") % {"problems": settings_problems(errors)},
            field="sampling",
            errors=errors,
        ) from None


def generation_job_start(
    *,
    project: Project,
    actor=None,
    sampling: dict | None = None,
    limit: int | None = None,
    version: ModelVersion | None = None,
    enqueue: bool = True,
    replace_active: bool = False,
    supersede_older: bool = False,
) -> GenerationJob:
    """Queue a job that gives every prompt without one a ranking task from the deployed policy.

    `enqueue=False` leaves the job for the caller to run (candidates_generate) in its own process.
    `replace_active=True` fails the project's queued or running jobs first: for start-up, when
    no worker can be running them any more (their remaining prompts go to the new job).
    `supersede_older=True` cancels the project's queued or running jobs of other versions (a
    running one stops at its next heartbeat): after a deploy, the new policy writes what is left.
    """
    version = version or selectors.deployed_policy(project=project)
    if version is None:
        raise Conflict(gettext("%(project)s has no deployed policy; deploy one first.") % {"project": project.name})
    if version.project_id != project.pk:
        raise LabelingError(gettext("That model version belongs to another project."), field="model_version")
    params = sampling_params_from(sampling)
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)  # one active job per project
        _generation_jobs_expire(project=project, everything_active=replace_active)
        if supersede_older:
            _generation_jobs_supersede(project=project, version=version, actor=actor)
        if selectors.generation_job_active(project=project):
            raise Conflict(gettext("A generation job is already queued or running for this project."))
        job = GenerationJob.objects.create(
            project=project, model_version=version, sampling=params.as_dict(), limit=limit, created_by=actor
        )
        event_record(
            actor=actor,
            verb="generation.started",
            project=project,
            payload={"generation_job_id": job.pk, "model_version_id": version.pk, "sampling": job.sampling},
        )
        if enqueue:
            _generation_enqueue(job.pk)
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


def _generation_jobs_supersede(*, project: Project, version: ModelVersion, actor) -> None:
    older = GenerationJob.objects.filter(project=project, status__in=GenerationJob.ACTIVE).exclude(
        model_version=version
    )
    for job_id in older.values_list("pk", flat=True):
        superseded = GenerationJob.objects.filter(pk=job_id, status__in=GenerationJob.ACTIVE).update(
            status=GenerationJob.Status.CANCELLED,
            finished_at=timezone.now(),
            error=f"Superseded by {version}, deployed since: its job writes the prompts this one did not reach.",
        )
        if superseded:
            event_record(
                actor=actor,
                verb="generation.superseded",
                project=project,
                payload={"generation_job_id": job_id, "model_version_id": version.pk},
            )


def _generation_enqueue(job_id: int) -> None:
    enqueue("worker.tasks.gpu_generate_candidates", job_id)


def generation_job_cancel(*, job: GenerationJob, actor=None) -> bool:
    """Stop a queued or running job; the worker notices between batches. Tasks made so far stay."""
    with transaction.atomic():
        cancelled = GenerationJob.objects.filter(pk=job.pk, status__in=GenerationJob.ACTIVE).update(
            status=GenerationJob.Status.CANCELLED, finished_at=timezone.now()
        )
        if cancelled:
            event_record(
                actor=actor, verb="generation.cancelled", project=job.project, payload={"generation_job_id": job.pk}
            )
    return bool(cancelled)


class _LostClaim(Exception):
    """The job was cancelled, or another worker re-claimed it: stop without touching it."""


class _RoundFirst(Exception):
    """A round's stage waits for the gpu worker: pause the job and queue it again behind it."""

    def __init__(self, stage_id: int):
        super().__init__(stage_id)
        self.stage_id = stage_id


def _round_first_check(job: GenerationJob) -> None:
    """Raise _RoundFirst when a round's next stage waits for the gpu, unless this job already
    paused for that very stage (then its message did not come first, and the job runs on)."""
    from training.rounds.selectors import round_stage_waiting_for_gpu

    stage = round_stage_waiting_for_gpu()
    if stage is not None and stage.pk != job.yielded_to_stage:
        raise _RoundFirst(stage.pk)


def _job_pause(job: GenerationJob, *, stage_id: int) -> None:
    """Back to queued, its message sent again (after the round stage's, already on the queue)."""
    with transaction.atomic():
        paused = GenerationJob.objects.filter(
            pk=job.pk, status=GenerationJob.Status.RUNNING, attempts=job.attempts
        ).update(status=GenerationJob.Status.QUEUED, yielded_to_stage=stage_id, heartbeat_at=timezone.now())
        if not paused:
            return
        event_record(
            actor=None,
            verb="generation.paused",
            project=job.project,
            payload={"generation_job_id": job.pk, "round_stage_id": stage_id},
        )
        _generation_enqueue(job.pk)


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


def version_generator(version: ModelVersion, **options):
    """The loaded model for this version (loaded once per process), on the configured backend;
    its files are downloaded first from MODEL_STORE_URL if this host has none yet."""
    model_version_fetch(version)
    backend = settings.GENERATION_BACKEND
    if backend != "vllm" and not (backend == "auto" and vllm_usable()):
        options.setdefault("cpu_threads", settings.TORCH_CPU_THREADS or default_cpu_threads())
    return generator_for(version.path, backend=backend, **options)


class _Heartbeat:
    """Called at every decoding step: every few seconds it records that the worker is alive, and
    raises _LostClaim as soon as the job is cancelled (so Cancel does not wait for the batch)."""

    EVERY_SECONDS = 5.0

    def __init__(self, job: GenerationJob, *, rounds_first: bool = True):
        self.job, self.last, self.rounds_first = job, time.monotonic(), rounds_first

    def __call__(self) -> None:
        if time.monotonic() - self.last >= self.EVERY_SECONDS:
            self.last = time.monotonic()
            _job_touch(self.job)
            if self.rounds_first:
                _round_first_check(self.job)


def _job_finish(job: GenerationJob, *, status: str, error: str = "") -> None:
    GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.RUNNING, attempts=job.attempts).update(
        status=status, error=error[:10_000], finished_at=timezone.now(), heartbeat_at=timezone.now()
    )


def candidates_generate(*, job_id: int, rounds_first: bool = True) -> GenerationJob | None:
    """The worker's side of a generation job. Safe to run twice for one job.

    A job that a round's waiting stage pre-empts goes back to the queue (see the module's note);
    rounds_first=False, for a job run outside the gpu queue (`generate_candidates --now`), never pauses.
    A failure is recorded on the job and raised again. A worker shutting down (SystemExit,
    KeyboardInterrupt) leaves the job running: its heartbeat goes stale and the redelivered
    message claims it again, skipping the prompts already done.
    """
    job = generation_job_claim(job_id=job_id)
    if job is None:
        return None
    try:
        _generate(job, rounds_first=rounds_first)
    except _LostClaim:
        return job
    except _RoundFirst as waiting:
        _job_pause(job, stage_id=waiting.stage_id)
        job.refresh_from_db()
        return job
    except Exception as error:  # including the soft time limit: record it, then let Celery see it
        _job_finish(job, status=GenerationJob.Status.FAILED, error=f"{type(error).__name__}: {error}")
        event_record(
            actor=None,
            verb="generation.failed",
            project=job.project,
            payload={"generation_job_id": job.pk, "error": str(error)[:2000]},
        )
        raise
    _job_finish(job, status=GenerationJob.Status.SUCCEEDED)
    job.refresh_from_db()
    return job


def _generate(job: GenerationJob, *, rounds_first: bool) -> None:
    version, project = job.model_version, job.project
    model_version_fetch(version)  # from MODEL_STORE_URL when this host has no copy; else a clear error
    if rounds_first:
        _round_first_check(job)  # before loading the model
    params = SamplingParams(**job.sampling)
    done_before = GeneratedTask.objects.filter(job=job).count()  # from an earlier claim of this job
    limit = None if job.limit is None else max(job.limit - done_before, 0)
    prompts = selectors.prompts_needing_candidates(project=project, version=version, limit=limit)
    generator = version_generator(version, batch_size=settings.GENERATION_BATCH_SIZE)
    _job_touch(job, prompts_total=len(prompts), prompts_done=0, prompts_skipped=0, backend=generator.describe())
    heartbeat = _Heartbeat(job, rounds_first=rounds_first)
    priority = deployment_priority(version)
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
                job=job, prompt=prompt, samples=samples, params=params, backend=generator.describe(), priority=priority
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


def deployment_priority(version: ModelVersion) -> int:
    """The number of the version's latest deployment (0 if never deployed): ranking tasks from
    the policy deployed last are served before older ones, which still get finished after."""
    return Deployment.objects.filter(model_version=version).aggregate(n=Max("id"))["n"] or 0


def _generated_task_create(
    *, job, prompt: Prompt, samples: list[Sample], params: SamplingParams, backend: dict, priority: int = 0
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
                prompt=prompt,
                answers=answers,
                metadata={"generation_job_id": job.pk, "model_version_id": version.pk},
                priority=priority,
            )
            GeneratedTask.objects.create(prompt=prompt, model_version=version, task=task, job=job)
    except IntegrityError:
        # Another worker (or an earlier delivery) made this prompt's task from this version first.
        return False
    return True
