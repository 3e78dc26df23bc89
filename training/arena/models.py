"""The arena's rows: a blind battle between two policy versions and its vote."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from labeling.models import Project, Prompt, Task
from training.registry.models import ModelVersion


class ArenaBattle(models.Model):
    """One prompt answered by two policy versions, shown blind as A and B; then one vote.

    The vote becomes labeling data: a completed K=2 ranking task whose Ranking is the voter's.
    """

    class Vote(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both are bad"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="arena_battles")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="arena_battles")
    version_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    version_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    answer_a = models.TextField()
    answer_b = models.TextField()
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
