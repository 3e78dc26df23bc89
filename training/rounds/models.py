"""Training rounds: snapshot → SFT → reward model → policy optimisation → evaluation → deploy.

Imported into training.models so Django registers them with the training app.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

STAGES = ("snapshot", "sft", "reward", "policy", "evaluate", "deploy")


class Round(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", gettext_lazy("Queued")
        RUNNING = "running", gettext_lazy("Running")
        AWAITING_DECISION = "awaiting_decision", gettext_lazy("awaiting an admin's decision")
        SUCCEEDED = "succeeded", gettext_lazy("Succeeded")
        FAILED = "failed", gettext_lazy("Failed")
        CANCELLED = "cancelled", gettext_lazy("Cancelled")

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.AWAITING_DECISION)

    project = models.ForeignKey("labeling.Project", on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    config = models.JSONField(default=dict, help_text=gettext_lazy("Every stage's settings, frozen at start."))
    base_policy = models.ForeignKey(
        "training.ModelVersion",
        on_delete=models.PROTECT,
        related_name="+",
        help_text=gettext_lazy("The deployed policy at start."),
    )
    sft_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reward_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    policy_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    snapshots = models.ManyToManyField("training.DatasetSnapshot", blank=True, related_name="rounds")
    evaluation = models.JSONField(default=dict, blank=True)
    deployed = models.BooleanField(default=False)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="round_number_per_project")]

    def __str__(self) -> str:
        return f"{self.project} round {self.number}"


class RoundStage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", gettext_lazy("Pending")
        RUNNING = "running", gettext_lazy("Running")
        SUCCEEDED = "succeeded", gettext_lazy("Succeeded")
        SKIPPED = "skipped", gettext_lazy("Skipped")
        WAITING = "waiting", gettext_lazy("waiting for a decision")
        FAILED = "failed", gettext_lazy("Failed")
        CANCELLED = "cancelled", gettext_lazy("Cancelled")

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=20)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    step = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(
        default=dict, blank=True, help_text=gettext_lazy("The latest numbers, and the final ones when done.")
    )
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["round", "position"]
        constraints = [models.UniqueConstraint(fields=["round", "name"], name="round_stage_once")]

    def __str__(self) -> str:
        return f"{self.round} · {self.name} ({self.status})"


class RoundMetric(models.Model):
    """One point of a stage's curves (loss, reward, KL, accuracy…) at one step."""

    stage = models.ForeignKey(RoundStage, on_delete=models.CASCADE, related_name="points")
    step = models.PositiveIntegerField()
    values = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["stage", "step", "id"]

    def __str__(self) -> str:
        return f"{self.stage} step {self.step}"
