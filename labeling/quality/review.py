"""Peer review of demonstrations: reviewers accept one, edit it (the original is kept, the edit
and their diff beside it) or reject it with a reason, as Open-Assistant did.

A demonstration is decided once it has the project's `reviews_required` reviews: accepted when
the share of accept and edit verdicts reaches `review_accept_share` (3 reviews at 0.6: two of
three must accept), else rejected. Its `reviewed_text` is then the latest edit's text, which SFT
snapshots read instead of the annotator's; rejected demonstrations never reach a snapshot
(training.datasets.exports.rows.demonstrations_selected).

Each reviewer judges the annotator's text as written, independently of the other reviewers, so
that the verdicts are independent votes; an edit's diff is against that text.

`reviews_required = 0` turns review off: no ordinary demonstration is served for review and a
review of one is refused, and every demonstration trains as written. Gold demonstrations are the
exception: their review is how the annotator's gold answer is scored (labeling.quality.gold),
so they are served to reviewers in every project and one review decides them.
"""

import difflib
import re
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext

from labeling.errors import Conflict, Forbidden, LabelingError, NotFound
from labeling.events import event_record
from labeling.models import Demonstration, Project, Review
from labeling.quality.gold import gold_check
from labeling.validation import client_id_clean, row_id

REASON_MAX_CHARS = Review._meta.get_field("reason").max_length
GOLD_REVIEWS = 1  # reviews that decide a gold demonstration where the project asks for none


def reviews_needed(*, project: Project, gold: bool) -> int:
    """Reviews that decide a demonstration of this project; 0: it is not reviewed."""
    if project.reviews_required > 0:
        return project.reviews_required
    return GOLD_REVIEWS if gold else 0


# --- reads --------------------------------------------------------------------------------------


def review_next(*, reviewer, project: Project) -> Demonstration | None:
    """The oldest demonstration of the project still waiting for reviews that this reviewer may
    review: not their own, not one they reviewed. Pending ones have fewer reviews than needed
    (where an admin lowered the number meanwhile, one more review decides them)."""
    queryset = (
        Demonstration.objects.filter(task__project=project, review_state=Demonstration.ReviewState.PENDING)
        .exclude(annotator=reviewer)
        .exclude(Exists(Review.objects.filter(demonstration=OuterRef("pk"), reviewer=reviewer)))
    )
    if project.reviews_required == 0:
        queryset = queryset.filter(task__gold=True)
    return (
        queryset.select_related("task__prompt", "task__gold_answer")
        .annotate(review_count=Count("reviews"))
        .order_by("created_at", "id")
        .first()
    )


def gold_reference(demonstration: Demonstration) -> str | None:
    """The reference answer of a gold demonstration task, which reviewers see beside the
    annotator's; None for other tasks."""
    if not demonstration.task.gold:
        return None
    answer = getattr(demonstration.task, "gold_answer", None)
    return answer.text if answer is not None and answer.text else None


def review_counts(*, project: Project) -> dict[str, int]:
    """The project's demonstrations by review state, and how many of them wait for reviewers."""
    counts = dict.fromkeys(Demonstration.ReviewState.values, 0)
    rows = Demonstration.objects.filter(task__project=project).values_list("review_state").annotate(n=Count("pk"))
    counts.update(dict(rows))
    waiting = Demonstration.objects.filter(task__project=project, review_state=Demonstration.ReviewState.PENDING)
    if project.reviews_required == 0:
        waiting = waiting.filter(task__gold=True)
    return {**counts, "waiting": waiting.count()}


# --- the diff between the annotator's text and a reviewer's edit ---------------------------------

# A word of Latin, Cyrillic… letters or digits is one token; each CJK character is one (those
# scripts do not separate words with spaces), as is each punctuation mark and each run of spaces.
_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_TOKENS = re.compile(rf"\s+|[{_CJK}]|[^\W{_CJK}]+|[^\w\s]", re.UNICODE)


def _tokens(text: str) -> list[str]:
    tokens = _TOKENS.findall(text)
    assert "".join(tokens) == text  # every character lands in exactly one token
    return tokens


def text_diff(original: str, edited: str) -> list[dict]:
    """Word-level diff for display: segments {op: equal | delete | insert, text} in reading order."""
    before, after = _tokens(original), _tokens(edited)
    segments: list[dict] = []

    def add(op: str, parts: list[str]) -> None:
        text = "".join(parts)
        if not text:
            return
        if segments and segments[-1]["op"] == op:
            segments[-1]["text"] += text
        else:
            segments.append({"op": op, "text": text})

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag == "equal":
            add("equal", before[i1:i2])
        else:
            add("delete", before[i1:i2])
            add("insert", after[j1:j2])
    return segments


def unified_diff(original: str, edited: str) -> str:
    """Line-level unified diff, the form `git diff` and patch tools read."""
    lines = difflib.unified_diff(
        original.splitlines(keepends=True), edited.splitlines(keepends=True), "annotator", "reviewer", lineterm="\n"
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


# --- the write ----------------------------------------------------------------------------------


def _verdict_clean(verdict, text, reason, *, original: str) -> tuple[str, str, str]:
    """The verdict, the edited text (edits only) and the reason, or the field that is wrong."""
    if verdict not in Review.Verdict.values:
        raise LabelingError(
            gettext("verdict must be one of %(verdicts)s.") % {"verdicts": ", ".join(Review.Verdict.values)},
            field="verdict",
        )
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise LabelingError(gettext("reason must be a string."), field="reason")
    reason = reason.strip()
    if len(reason) > REASON_MAX_CHARS:
        raise LabelingError(
            gettext("The reason is longer than %(limit)s characters.") % {"limit": REASON_MAX_CHARS}, field="reason"
        )
    if verdict == Review.Verdict.REJECT and not reason:
        raise LabelingError(
            gettext("Say why you reject this answer: the annotator and the admins read it."), field="reason"
        )
    if verdict != Review.Verdict.EDIT:
        return verdict, "", reason
    if not isinstance(text, str) or not text.strip():
        raise LabelingError(gettext("An edit needs the edited answer in text."), field="text")
    limit = settings.DEMONSTRATION_MAX_CHARS
    if len(text) > limit:
        raise LabelingError(
            gettext("The edited answer has %(text_length)s characters; the limit is %(limit)s.")
            % {"text_length": len(text), "limit": limit},
            field="text",
        )
    if text.strip() == original.strip():
        raise LabelingError(
            gettext("The edited answer is the same as the annotator's; accept it instead."), field="text"
        )
    return verdict, text, reason


def _replay(*, client_id: uuid.UUID, reviewer, demonstration_id) -> Review | None:
    """The review an earlier request with this client_id stored, if any (idempotent retries)."""
    existing = Review.objects.select_related("demonstration").filter(client_id=client_id).first()
    if existing is None:
        return None
    if existing.reviewer_id != reviewer.pk or existing.demonstration_id != row_id(demonstration_id):
        raise Conflict(gettext("This client_id was already used for another review."), field="client_id")
    return existing


def _locked_demonstration(demonstration_id) -> Demonstration:
    pk = row_id(demonstration_id)
    found = None
    if pk is not None:
        found = (
            Demonstration.objects.select_for_update(of=("self",)).select_related("task__project").filter(pk=pk).first()
        )
    if found is None:
        raise NotFound(
            gettext("There is no demonstration %(demonstration_id)s.") % {"demonstration_id": demonstration_id},
            field="demonstration",
        )
    return found


def _decide(demonstration: Demonstration, needed: int) -> bool:
    """Decide a demonstration whose reviews reached the number needed; False while they have not."""
    verdicts = list(demonstration.reviews.order_by("id").values_list("verdict", "text"))
    if needed == 0 or len(verdicts) < needed:
        return False
    accepting = sum(verdict != Review.Verdict.REJECT for verdict, _ in verdicts)
    accepted = accepting / len(verdicts) >= demonstration.task.project.review_accept_share
    edits = [text for verdict, text in verdicts if verdict == Review.Verdict.EDIT]
    demonstration.review_state = Demonstration.ReviewState.ACCEPTED if accepted else Demonstration.ReviewState.REJECTED
    demonstration.reviewed_text = edits[-1] if edits else ""
    demonstration.save(update_fields=["review_state", "reviewed_text"])
    return True


def review_submit(*, reviewer, demonstration_id, verdict, text="", reason="", client_id) -> tuple[Review, bool]:
    """Record a reviewer's verdict on a demonstration and, with the last review it needs, decide
    it (a gold demonstration's decision scores its annotator). Idempotent by client_id: a retry
    gets the stored review back, with created False."""
    client_uuid = client_id_clean(client_id)
    if existing := _replay(client_id=client_uuid, reviewer=reviewer, demonstration_id=demonstration_id):
        return existing, False
    try:
        with transaction.atomic():
            demonstration = _locked_demonstration(demonstration_id)
            project = demonstration.task.project
            needed = reviews_needed(project=project, gold=demonstration.task.gold)
            _check_may_review(demonstration, reviewer=reviewer, needed=needed)
            verdict, text, reason = _verdict_clean(verdict, text, reason, original=demonstration.text)
            review = Review.objects.create(
                demonstration=demonstration,
                reviewer=reviewer,
                verdict=verdict,
                text=text,
                reason=reason,
                client_id=client_uuid,
                created_at=timezone.now(),
            )
            decided = _decide(demonstration, needed)
            payload = {
                "review_id": review.pk,
                "demonstration_id": demonstration.pk,
                "client_id": str(client_uuid),
                "verdict": verdict,
                "reason": reason,
                "review_state": demonstration.review_state,
            }
            if verdict == Review.Verdict.EDIT:
                payload |= {"original_text": demonstration.text, "text": text}
            event_record(
                actor=reviewer, verb="demonstration.reviewed", project=project, task=demonstration.task, payload=payload
            )
            if decided and demonstration.task.gold:  # the verdict is the annotator's gold score
                gold_check(project=project, annotator=demonstration.annotator)
            review.demonstration = demonstration
            return review, True
    except IntegrityError:
        # The same client_id raced in from a second request: answer as the first was answered.
        if existing := _replay(client_id=client_uuid, reviewer=reviewer, demonstration_id=demonstration_id):
            return existing, False
        raise


def _check_may_review(demonstration: Demonstration, *, reviewer, needed: int) -> None:
    if needed == 0:
        raise Conflict(
            gettext(
                "This project does not ask for reviews (reviews required is 0); an admin can turn review on in "
                "its settings."
            ),
            field="demonstration",
        )
    if demonstration.annotator_id == reviewer.pk:
        raise Forbidden(gettext("You wrote this answer; other reviewers review it."), field="demonstration")
    if demonstration.reviews.filter(reviewer=reviewer).exists():
        raise Conflict(gettext("You already reviewed this answer."), field="demonstration")
    if demonstration.review_state != Demonstration.ReviewState.PENDING:
        raise Conflict(
            gettext("This answer was already %(review_state)s by its reviewers; take the next one.")
            % {"review_state": demonstration.review_state},
            field="demonstration",
        )
