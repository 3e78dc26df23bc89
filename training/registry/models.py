"""The model registry's rows: policy and reward model versions, the deployed-policy pointer and
its history, generation jobs and the ranking tasks they made.

Lineage: every ModelVersion knows its parent and the round that made it; every generated answer
(labeling.Candidate.model_version) knows the version that wrote it.
"""

from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from labeling.models import Project, Prompt, Task


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        POLICY = "policy", gettext_lazy("Policy")
        REWARD = "reward", gettext_lazy("Reward")

    class Status(models.TextChoices):
        PENDING = "pending"  # files being written (a training round in progress)
        READY = "ready", gettext_lazy("Ready")
        FAILED = "failed", gettext_lazy("Failed")
        ARCHIVED = "archived", gettext_lazy("Archived")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.POLICY)
    name = models.CharField(max_length=200)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    round_number = models.PositiveIntegerField(
        null=True, blank=True, help_text=gettext_lazy("The training round that made it; empty for a base model.")
    )
    storage_path = models.CharField(max_length=500, help_text=gettext_lazy("Folder relative to MODEL_STORE."))
    content_hash = models.CharField(
        max_length=64, help_text=gettext_lazy("SHA-256 of the checkpoint folder (training.ml.checkpoints).")
    )
    config = models.JSONField(
        default=dict, blank=True, help_text=gettext_lazy("Architecture, source and how it was made.")
    )
    metrics = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READY)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Registering the same checkpoint twice in a project returns the first registration.
            models.UniqueConstraint(fields=["project", "kind", "content_hash"], name="model_version_unique_content")
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.pk})"

    @property
    def path(self) -> Path:
        return Path(settings.MODEL_STORE) / self.storage_path


class DeployedPolicy(models.Model):
    """The one pointer to a project's deployed policy; each switch also leaves a Deployment."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="deployed_policy")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    deployment = models.ForeignKey("Deployment", on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.project}: {self.model_version}"


class Deployment(models.Model):
    """History of switches of the deployed policy: who, when, from which version to which."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    previous = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rollback = models.BooleanField(default=False, help_text=gettext_lazy("The version had been deployed before."))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.project}: v{self.previous_id} → v{self.model_version_id} at {self.created_at:%Y-%m-%d %H:%M}"


class GenerationJob(models.Model):
    """Sampling K answers for every prompt that has no ranking task from this version yet."""

    class Status(models.TextChoices):
        QUEUED = "queued", gettext_lazy("Queued")
        RUNNING = "running", gettext_lazy("Running")
        SUCCEEDED = "succeeded", gettext_lazy("Succeeded")
        FAILED = "failed", gettext_lazy("Failed")
        CANCELLED = "cancelled", gettext_lazy("Cancelled")

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_jobs")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="generation_jobs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    sampling = models.JSONField(
        default=dict, help_text=gettext_lazy("Sampling parameters and seed (training.ml.generation.SamplingParams).")
    )
    limit = models.PositiveIntegerField(
        null=True, blank=True, help_text=gettext_lazy("At most this many prompts; empty: all.")
    )
    prompts_total = models.PositiveIntegerField(default=0)
    prompts_done = models.PositiveIntegerField(default=0)
    tasks_created = models.PositiveIntegerField(default=0)
    prompts_skipped = models.PositiveIntegerField(
        default=0, help_text=gettext_lazy("Fewer than K distinct answers after resampling.")
    )
    attempts = models.PositiveIntegerField(default=0, help_text=gettext_lazy("How many times a worker claimed it."))
    yielded_to_stage = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text=gettext_lazy(
            "The round stage (RoundStage id) this job last paused for: rounds go first on the gpu queue."
        ),
    )
    backend = models.JSONField(default=dict, blank=True, help_text=gettext_lazy("Backend, device and dtype used."))
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"generation job {self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.prompts_done / self.prompts_total) if self.prompts_total else 0


class GeneratedTask(models.Model):
    """The ranking task one model version generated for one prompt.

    The unique constraint is what makes generation idempotent: a redelivered message, a second
    worker or a re-run cannot give a prompt two ranking tasks from the same version.
    """

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="generated_tasks")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="generated_tasks")
    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="generated")
    job = models.ForeignKey(
        GenerationJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="generated_tasks"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "model_version"], name="generated_task_once_per_version")
        ]

    def __str__(self) -> str:
        return f"task {self.task_id} from v{self.model_version_id}"
