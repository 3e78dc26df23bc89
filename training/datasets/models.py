"""Dataset snapshots: immutable, documented exports of a project's labels.

Imported into training.models so Django registers them with the training app.
"""

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy


def new_salt() -> str:
    return secrets.token_hex(16)


class DatasetSnapshot(models.Model):
    class Kind(models.TextChoices):
        SFT = "sft", gettext_lazy("Sft")
        PREFERENCE = "preference", gettext_lazy("Preference")
        RANKING = "ranking", gettext_lazy("Ranking")
        CONSENSUS = "consensus", gettext_lazy("Consensus")
        ANNOTATIONS = "annotations", gettext_lazy("Annotations")

    class Format(models.TextChoices):
        JSONL = "jsonl", gettext_lazy("Jsonl")
        PARQUET = "parquet", gettext_lazy("Parquet")

    class PairMode(models.TextChoices):
        ALL = "all", gettext_lazy("every implied pair")
        BEST_WORST = "best_worst", gettext_lazy("best versus worst")

    class Status(models.TextChoices):
        PENDING = "pending", gettext_lazy("Pending")
        RUNNING = "running", gettext_lazy("Running")
        READY = "ready", gettext_lazy("Ready")
        FAILED = "failed", gettext_lazy("Failed")

    project = models.ForeignKey("labeling.Project", on_delete=models.PROTECT, related_name="snapshots")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.JSONL)
    filters = models.JSONField(
        default=dict, blank=True, help_text=gettext_lazy("The filter the rows were chosen by, frozen.")
    )
    pair_mode = models.CharField(max_length=20, choices=PairMode.choices, default=PairMode.ALL)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    rows_done = models.PositiveBigIntegerField(default=0)
    rows_total = models.PositiveBigIntegerField(
        null=True, blank=True, help_text=gettext_lazy("Source records to read.")
    )
    counts = models.JSONField(default=dict, blank=True)
    files = models.JSONField(
        default=list, blank=True, help_text=gettext_lazy("[{name, sha256, bytes}] of the download.")
    )
    code_version = models.CharField(max_length=100, blank=True)
    salt = models.CharField(
        max_length=64, default=new_salt, editable=False, help_text=gettext_lazy("Keys the annotator pseudonyms.")
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"snapshot {self.pk} ({self.kind}, {self.format}) of {self.project}"

    @property
    def data_file_name(self) -> str:
        return f"{self.kind}.{self.format}"
