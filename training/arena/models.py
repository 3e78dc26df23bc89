"""The arena's and the playground's rows: a blind battle between two policy versions and its vote,
and a playground turn. Both are answered by the `interactive` worker, never by a web process."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from labeling.models import Project, Prompt, Task
from training.registry.models import ModelVersion


class InteractiveWork(models.Model):
    """A generation a person waits for: queued by the web process, answered by the interactive
    worker (worker.tasks.interactive_*), polled by the page until it is done or failed."""

    class Status(models.TextChoices):
        QUEUED = "queued", gettext_lazy("Queued")
        RUNNING = "running", gettext_lazy("Running")
        DONE = "done", gettext_lazy("Done")
        FAILED = "failed", gettext_lazy("Failed")

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class ArenaBattle(InteractiveWork):
    """One prompt answered by two policy versions, shown blind as A and B; then one vote.

    The vote becomes labeling data: a completed K=2 ranking task whose Ranking is the voter's.
    """

    class Vote(models.TextChoices):
        A = "a", gettext_lazy("A is better")
        B = "b", gettext_lazy("B is better")
        TIE = "tie", gettext_lazy("Tie")
        BOTH_BAD = "both_bad", gettext_lazy("Both are bad")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="arena_battles")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="arena_battles")
    version_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    version_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    seed = models.BigIntegerField(default=0)  # the sampling seed of side A; side B draws seed + 1
    answer_a = models.TextField(blank=True)
    answer_b = models.TextField(blank=True)
    generation_a = models.JSONField(default=dict)
    generation_b = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="arena_battles")
    created_at = models.DateTimeField(default=timezone.now)
    vote = models.CharField(max_length=10, choices=Vote.choices, blank=True)
    voted_at = models.DateTimeField(null=True, blank=True)
    task = models.OneToOneField(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="arena_battle")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "vote"], name="arena_battle_vote_idx")]

    def __str__(self) -> str:
        return f"battle {self.pk}: v{self.version_a_id} vs v{self.version_b_id}"


class PlaygroundTurn(InteractiveWork):
    """A policy version's next assistant turn for a conversation ending with the person's message.
    The conversation itself lives in the person's session; this row carries one turn to the worker
    and back. Nothing here becomes labeling data."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="playground_turns")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="playground_turns")
    created_at = models.DateTimeField(default=timezone.now)
    messages = models.JSONField(default=list)  # the conversation so far, ending with a user turn
    seed = models.BigIntegerField(default=0)
    reply = models.TextField(blank=True)
    generation = models.JSONField(default=dict)  # sampling, seed, finish_reason, new_tokens

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"playground turn {self.pk} by v{self.version_id}"
