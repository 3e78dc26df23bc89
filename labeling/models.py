"""Projects, prompts, tasks, leases and the labels annotators write.

A task is shared by up to `overlap` annotators; each annotator's claim on it is an Assignment
(the lease), and each finished assignment has exactly one Demonstration or Ranking.
"""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text=gettext_lazy("Markdown shown to annotators."))
    k = models.PositiveSmallIntegerField(
        "answers per ranking task",
        default=4,
        validators=[MinValueValidator(2), MaxValueValidator(9)],
    )
    overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text=gettext_lazy("How many different annotators must complete each task."),
    )
    lease_seconds = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(30), MaxValueValidator(24 * 3600)],
        help_text=gettext_lazy("A leased task returns to the pool this long after the last heartbeat."),
    )
    paused = models.BooleanField(default=False, help_text=gettext_lazy("Paused projects serve no tasks."))
    deploy_threshold = models.FloatField(
        default=0.55,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=gettext_lazy(
            "A round's new policy is deployed by itself when its win rate over the deployed one reaches this."
        ),
    )
    held_out_share = models.FloatField(
        default=0.2,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text=gettext_lazy(
            "Share of new prompts set aside, by a hash of their text, as the frozen evaluation split: "
            "labeled like any other, never trained on, the same prompts for every round."
        ),
    )
    # --- quality control (labeling/quality) ---
    gold_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text=gettext_lazy(
            "Share of the tasks an annotator is served that are gold tasks (known answers, shown like any other)."
        ),
    )
    gold_threshold = models.FloatField(
        default=0.75,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=gettext_lazy(
            # xgettext:no-python-format
            "An annotator whose gold accuracy is confidently below this (the 95% interval's upper end) is put on hold."
        ),
    )
    gold_min_answers = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text=gettext_lazy("Gold tasks an annotator answers before their accuracy can put them on hold."),
    )
    reviews_required = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(10)],
        help_text=gettext_lazy("Reviews a demonstration needs before rounds train on it; 0 turns review off."),
    )
    review_accept_share = models.FloatField(
        default=0.6,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=gettext_lazy(
            "Share of its reviews that must accept (or edit) a demonstration for it to be accepted."
        ),
    )
    adjudication_threshold = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=gettext_lazy(
            "A ranking task whose annotators agree on fewer than this share of pairs goes to adjudication."
        ),
    )
    adaptive_overlap = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(10)],
        help_text=gettext_lazy(
            "Extra annotators a low-agreement ranking task may ask for before it goes to adjudication."
        ),
    )
    leaderboard = models.BooleanField(
        default=False,
        help_text=gettext_lazy("Annotators see a leaderboard of the project's annotators (counts and gold accuracy)."),
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    """A conversation ending with a user turn: [{"role": ..., "content": ...}, ...]."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    messages = models.JSONField()
    content_hash = models.CharField(max_length=64, help_text=gettext_lazy("SHA-256 of the messages; dedupes imports."))
    source = models.CharField(max_length=200, blank=True)
    held_out = models.BooleanField(
        default=False,
        help_text=gettext_lazy("In the project's frozen evaluation split: rounds evaluate on it, never train on it."),
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "content_hash"], name="prompt_unique_per_project")]

    def __str__(self) -> str:
        last = self.messages[-1]["content"] if self.messages else ""
        return last[:80]


class Task(models.Model):
    class Kind(models.TextChoices):
        DEMONSTRATION = "demonstration", gettext_lazy("Demonstration")
        RANKING = "ranking", gettext_lazy("Ranking")

    class State(models.TextChoices):
        OPEN = "open", gettext_lazy("Open")
        COMPLETED = "completed", gettext_lazy("Completed")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.OPEN)
    completions = models.PositiveIntegerField(default=0)
    priority = models.IntegerField(
        default=0,
        help_text=gettext_lazy(
            "Higher is served first. Ranking tasks from a policy take the number of its deployment, "
            "so the newly deployed policy's answers are labeled before older ones."
        ),
    )
    gold = models.BooleanField(
        default=False,
        db_default=False,
        help_text=gettext_lazy(
            "A gold task: its answer is known (GoldAnswer); every annotator may get it once, at the project's "
            "gold rate, and it is never completed."
        ),
    )
    extra_overlap = models.PositiveSmallIntegerField(
        default=0,
        db_default=0,
        help_text=gettext_lazy(
            "Annotators asked for beyond the project's overlap because the first ones disagreed (adaptive overlap)."
        ),
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        # The order in which tasks are handed out (labeling.sql.NEXT_TASK): with it, choosing the
        # next task reads the first few open tasks instead of sorting all of them.
        indexes = [
            models.Index(fields=["project", "state", "gold", "-priority", "-completions", "id"], name="task_queue_idx")
        ]

    def __str__(self) -> str:
        return f"{self.kind} task {self.pk}"


class Candidate(models.Model):
    """One of the K answers of a ranking task. `public_id` is the opaque id clients see."""

    # Indexed with id below: exports read a task's answers in order, with no sort.
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="candidates", db_index=False)
    public_id = models.CharField(max_length=32, unique=True)
    text = models.TextField()
    source = models.CharField(
        max_length=200, help_text=gettext_lazy("Who wrote it: a model version, 'demo', 'imported'…")
    )
    demonstration = models.ForeignKey(
        "Demonstration",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="candidates",
        help_text=gettext_lazy("Set when the answer is an annotator's demonstration: that annotator never ranks it."),
    )
    generation = models.JSONField(
        default=dict, blank=True, help_text=gettext_lazy("Sampling parameters, seed, model version.")
    )
    model_version = models.ForeignKey(
        "training.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="candidates",
        help_text=gettext_lazy("The model version that wrote this answer; empty for people's and imported answers."),
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "id"], name="candidate_task_order_idx")]

    def __str__(self) -> str:
        return self.public_id


class Assignment(models.Model):
    """One annotator's claim on one task: leased, then submitted, skipped or expired."""

    class State(models.TextChoices):
        LEASED = "leased", gettext_lazy("Leased")
        SUBMITTED = "submitted", gettext_lazy("Submitted")
        SKIPPED = "skipped", gettext_lazy("Skipped")
        EXPIRED = "expired", gettext_lazy("Expired")

    # No index of their own: the unique (task, annotator) and (annotator, state) indexes below
    # lead with them. With a redundant single-column index, PostgreSQL without statistics yet (a
    # new project's first minute) probed "has this annotator done this task?" through all of the
    # annotator's assignments for every task in the queue instead of the unique index.
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.LEASED)
    leased_at = models.DateTimeField(default=timezone.now)
    lease_expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    candidate_order = models.JSONField(
        default=list, blank=True, help_text=gettext_lazy("Public ids in this annotator's order.")
    )
    draft_text = models.TextField(blank=True)
    draft_saved_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # An annotator never receives the same task twice.
            models.UniqueConstraint(fields=["task", "annotator"], name="assignment_once_per_annotator")
        ]
        indexes = [
            models.Index(fields=["task", "state", "lease_expires_at"], name="assignment_slot_idx"),
            models.Index(fields=["annotator", "state"], name="assignment_annotator_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} on task {self.task_id} ({self.state})"


class Demonstration(models.Model):
    class ReviewState(models.TextChoices):
        PENDING = "pending", gettext_lazy("Pending")
        ACCEPTED = "accepted", gettext_lazy("Accepted")
        REJECTED = "rejected", gettext_lazy("Rejected")

    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="demonstration")
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="demonstrations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="demonstrations")
    text = models.TextField()
    review_state = models.CharField(
        max_length=20,
        choices=ReviewState.choices,
        default=ReviewState.PENDING,
        db_default="pending",
        help_text=gettext_lazy(
            "Peer review's outcome (labeling/quality/review.py); rejected demonstrations never reach SFT."
        ),
    )
    reviewed_text = models.TextField(
        blank=True,
        db_default="",
        help_text=gettext_lazy("The text as reviewers last edited it; empty when no one edited it."),
    )
    client_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{type(self).__name__.lower()} {self.pk} by {self.annotator_id} on task {self.task_id}"


class Ranking(models.Model):
    """Groups of candidate public ids from best to worst; a group of several ids is a tie."""

    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="ranking")
    # Indexed with id below: exports read rankings in task order, with no sort.
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="rankings", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rankings")
    groups = models.JSONField()
    ratings = models.JSONField(default=dict, blank=True)
    flags = models.JSONField(default=dict, blank=True)
    none_acceptable = models.BooleanField(default=False)
    client_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "id"], name="ranking_task_order_idx")]

    def __str__(self) -> str:
        return f"{type(self).__name__.lower()} {self.pk} by {self.annotator_id} on task {self.task_id}"


class Event(models.Model):
    """Audit trail of every accepted write: the provenance exports carry."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    verb = models.CharField(max_length=50)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "verb", "created_at"], name="event_project_idx")]

    def __str__(self) -> str:
        return f"{self.verb} by {self.actor_id} at {self.created_at:%Y-%m-%d %H:%M}"


# --- quality control (labeling/quality) ---------------------------------------------------------


class GoldAnswer(models.Model):
    """The known answer of a gold task: a reference ranking (groups of candidate public ids, best
    first) for a ranking task, or a reference answer for a demonstration task (which reviewers see
    beside the annotator's, and whose verdict is the annotator's gold score)."""

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="gold_answer")
    groups = models.JSONField(default=list, blank=True)
    text = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"gold answer of task {self.task_id}"


class Hold(models.Model):
    """An annotator put on hold in a project because their gold accuracy fell confidently below the
    project's threshold: they get no new tasks there, and snapshots and rounds can leave out their
    labels, until an admin releases them."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="holds")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="holds")
    accuracy = models.FloatField()
    low = models.FloatField()
    high = models.FloatField()
    gold_answers = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "annotator"],
                condition=models.Q(released_at__isnull=True),
                name="hold_one_active_per_annotator",
            )
        ]

    def __str__(self) -> str:
        return f"{self.annotator} on hold in {self.project}"


class Review(models.Model):
    """One reviewer's verdict on a demonstration: accept, edit (the edited text kept beside the
    original) or reject (with a reason)."""

    class Verdict(models.TextChoices):
        ACCEPT = "accept", gettext_lazy("Accept")
        EDIT = "edit", gettext_lazy("Edit")
        REJECT = "reject", gettext_lazy("Reject")

    demonstration = models.ForeignKey(Demonstration, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    text = models.TextField(blank=True, help_text=gettext_lazy("The edited text (verdict edit)."))
    reason = models.CharField(max_length=500, blank=True)
    client_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["demonstration", "reviewer"], name="review_once_per_reviewer")]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.reviewer_id} on demonstration {self.demonstration_id}"


class Adjudication(models.Model):
    """The final ranking of a task whose annotators disagreed, decided by a reviewer or an admin;
    it replaces the annotators' consensus for that task."""

    task = models.OneToOneField(Task, on_delete=models.PROTECT, related_name="adjudication")
    adjudicator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjudications")
    groups = models.JSONField()
    note = models.CharField(max_length=500, blank=True)
    client_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"adjudication of task {self.task_id}"


# --- people ---------------------------------------------------------------------------------------


class UserSettings(models.Model):
    """What a person chose for themselves, kept across logins and devices: for now, the language of
    the pages (labeling.language); blank follows the browser."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="yushan_settings")
    language = models.CharField(max_length=16, blank=True)

    class Meta:
        verbose_name_plural = "user settings"

    def __str__(self) -> str:
        return f"settings of {self.user_id}"


def new_public_id() -> str:
    return uuid.uuid4().hex[:16]
