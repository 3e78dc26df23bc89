"""Quality control over HTTP: the project's agreement report (GET /api/v1/projects/<id>/agreement/,
admins and researchers); gold tasks (PUT/DELETE /api/v1/tasks/<id>/gold/, admins), the project's
gold accuracy (GET /api/v1/projects/<id>/gold/, admins and researchers) and releasing a hold (POST
/api/v1/projects/<id>/holds/<hold_id>/release/, admins); for reviewers and admins, the next
demonstration to review (GET /api/v1/reviews/next/?project=ID), a review (POST
/api/v1/demonstrations/<id>/reviews/), the adjudication queue (GET
/api/v1/projects/<id>/adjudications/) and an adjudication (POST /api/v1/tasks/<id>/adjudication/)."""

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import validation
from labeling.api.params import project_id_param
from labeling.api.permissions import IsResearcher, IsReviewer, IsStaffAdmin
from labeling.api.serializers import MessageSerializer, RankingField, StrictCharField
from labeling.errors import NotFound
from labeling.markdown import markdown_to_html
from labeling.models import Demonstration, Hold, Project, Review, Task
from labeling.quality import adjudication, gold, review
from labeling.quality.selectors import project_agreement


class ProjectAgreementView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(
        responses={200: None},
        description="Pairwise agreement on shared rankings (ties count as a choice; a 95% interval "
        "resampling tasks), per annotator and per day, and Krippendorff's alpha for rankings, "
        "ratings, flags and 'none acceptable'. Only tasks two or more annotators ranked count.",
    )
    def get(self, request, pk: int):
        project = get_object_or_404(Project, pk=pk)
        return Response({"project": project.pk, **project_agreement(project=project)})


# --- gold tasks and holds (labeling.quality.gold) -------------------------------------------------


def _row_or_404(model, raw_id, **match):
    """A row by a path id; an id past 64 bits is no row (SQLite cannot even compare with it)."""
    row_id = validation.row_id(raw_id)
    row = model.objects.filter(pk=row_id, **match).first() if row_id is not None else None
    if row is None:
        raise NotFound(
            gettext("There is no %(verbose_name)s %(raw_id)s.")
            % {"verbose_name": model._meta.verbose_name, "raw_id": raw_id}
        )
    return row


class GoldInSerializer(serializers.Serializer):
    ranking = RankingField(
        required=False, help_text='A ranking task\'s known ranking, best first: [["id3"], ["id1", "id4"], ["id2"]].'
    )
    text = StrictCharField(required=False, trim_whitespace=False, help_text="A demonstration task's reference answer.")


class GoldOutSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    kind = serializers.CharField(help_text="demonstration or ranking")
    gold = serializers.BooleanField()
    ranking = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    text = serializers.CharField(allow_blank=True)


class HoldSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    annotator = serializers.CharField()
    accuracy = serializers.FloatField()
    interval = serializers.ListField(child=serializers.FloatField())
    gold_answers = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    released_at = serializers.DateTimeField(allow_null=True)
    released_by = serializers.CharField(allow_null=True)


class TaskGoldView(APIView):
    """PUT: make a task gold with its known answer (or change the answer); DELETE: make it an
    ordinary task again. Both idempotent."""

    permission_classes = [IsStaffAdmin]

    @extend_schema(
        parameters=[OpenApiParameter("task_id", int, OpenApiParameter.PATH)],
        request=GoldInSerializer,
        responses={200: GoldOutSerializer},
        description="A ranking task takes `ranking` (every one of its answer ids once, best first; a "
        "group of several is a tie), a demonstration task `text` (the reference answer reviewers "
        "see; the annotator's score is the review's verdict). Gold tasks are served to every "
        "annotator once, at the project's gold rate, looking like any other task.",
    )
    def put(self, request, task_id: int):
        task = _row_or_404(Task, task_id)
        data = GoldInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        answer = gold.gold_mark(task=task, actor=request.user, **data.validated_data)
        return Response(
            {"task": task.pk, "kind": task.kind, "gold": True, "ranking": answer.groups, "text": answer.text}
        )

    @extend_schema(parameters=[OpenApiParameter("task_id", int, OpenApiParameter.PATH)], responses={204: None})
    def delete(self, request, task_id: int):
        gold.gold_unmark(task=_row_or_404(Task, task_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectGoldView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(
        responses={200: None},
        description="The project's gold tasks, each annotator's gold accuracy with its 95% interval "
        "(resampling gold tasks) and number of gold answers, whether they are on hold, and the holds "
        "in force.",
    )
    def get(self, request, pk: int):
        project = _row_or_404(Project, pk)
        return Response({"project": project.pk, **gold.project_gold_report(project=project)})


class HoldReleaseView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(
        parameters=[OpenApiParameter("hold_id", int, OpenApiParameter.PATH)],
        request=None,
        responses={200: HoldSerializer},
        description="Let an annotator on hold work again. Idempotent. Only gold answers given after "
        "the release count towards another hold.",
    )
    def post(self, request, pk: int, hold_id: int):
        project = _row_or_404(Project, pk)
        hold = _row_or_404(Hold, hold_id, project=project)
        return Response(gold.hold_data(gold.hold_release(hold=hold, actor=request.user)))


# --- review and adjudication (labeling.quality.review, labeling.quality.adjudication) ------------


class ReviewTaskSerializer(serializers.Serializer):
    demonstration = serializers.IntegerField()
    task = serializers.IntegerField()
    project = serializers.IntegerField()
    messages = MessageSerializer(many=True)
    text = serializers.CharField(help_text="The annotator's answer, as written.")
    html = serializers.CharField(required=False, help_text="Sanitised markdown rendering (with ?render=html).")
    gold = serializers.BooleanField(help_text="A gold task: its verdict is the annotator's gold score.")
    reference = serializers.CharField(allow_null=True, help_text="A gold task's reference answer, else null.")
    reference_html = serializers.CharField(required=False, allow_null=True)
    reviews = serializers.IntegerField(help_text="Reviews it has so far.")
    reviews_required = serializers.IntegerField(help_text="Reviews that decide it.")
    created_at = serializers.DateTimeField()


class ReviewInSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=Review.Verdict.values)
    text = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="The edited answer (verdict edit)."
    )
    reason = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=review.REASON_MAX_CHARS,
        help_text="Why (required to reject; a note otherwise).",
    )
    client_id = serializers.UUIDField()


class DiffSegmentSerializer(serializers.Serializer):
    op = serializers.ChoiceField(choices=["equal", "delete", "insert"])
    text = serializers.CharField()


class ReviewOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    demonstration = serializers.IntegerField()
    verdict = serializers.ChoiceField(choices=Review.Verdict.values)
    text = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)
    client_id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    review_state = serializers.ChoiceField(
        choices=Demonstration.ReviewState.values, help_text="The demonstration's state after this review."
    )
    diff = serializers.CharField(allow_blank=True, help_text="Unified diff of an edit against the original.")
    diff_segments = DiffSegmentSerializer(many=True, help_text="The same edit word by word, for display.")


class AdjudicationAnswerSerializer(serializers.Serializer):
    id = serializers.CharField()
    label = serializers.CharField()
    text = serializers.CharField()


class AdjudicationRankingSerializer(serializers.Serializer):
    annotator = serializers.CharField(help_text="A pseudonym within this task.")
    ranking = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    order = serializers.CharField(help_text="The ranking in answer labels: A › B = C.")
    none_acceptable = serializers.BooleanField()


class AdjudicationTaskSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    agreement = serializers.FloatField()
    messages = MessageSerializer(many=True)
    answers = AdjudicationAnswerSerializer(many=True)
    rankings = AdjudicationRankingSerializer(many=True)


class AdjudicationQueueSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Tasks waiting, of which `tasks` shows the oldest.")
    threshold = serializers.FloatField()
    tasks = AdjudicationTaskSerializer(many=True)


class AdjudicationInSerializer(serializers.Serializer):
    ranking = RankingField(help_text='The final ranking, best first, e.g. [["id3"], ["id1", "id4"], ["id2"]].')
    note = StrictCharField(required=False, allow_blank=True, max_length=adjudication.NOTE_MAX_CHARS)
    client_id = serializers.UUIDField()


class AdjudicationOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task = serializers.IntegerField()
    ranking = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    note = serializers.CharField(allow_blank=True)
    client_id = serializers.UUIDField()
    created_at = serializers.DateTimeField()


def _created(data: dict, created: bool) -> Response:
    """201 with the stored record; a retry of a stored write says so (Idempotent-Replayed)."""
    response = Response(data, status=status.HTTP_201_CREATED)
    if not created:
        response["Idempotent-Replayed"] = "true"
    return response


def review_task_data(demonstration: Demonstration, *, html: bool) -> dict:
    project = demonstration.task.project
    reference = review.gold_reference(demonstration)
    messages = [dict(message) for message in demonstration.task.prompt.messages]
    data = {
        "demonstration": demonstration.pk,
        "task": demonstration.task_id,
        "project": project.pk,
        "messages": messages,
        "text": demonstration.text,
        "gold": demonstration.task.gold,
        "reference": reference,
        "reviews": demonstration.review_count,
        "reviews_required": review.reviews_needed(project=project, gold=demonstration.task.gold),
        "created_at": demonstration.created_at,
    }
    if html:
        for message in messages:
            message["html"] = markdown_to_html(message["content"])
        data["html"] = markdown_to_html(demonstration.text)
        data["reference_html"] = markdown_to_html(reference) if reference else None
    return data


def review_data(record: Review) -> dict:
    demonstration = record.demonstration
    edited = record.verdict == Review.Verdict.EDIT
    return {
        "id": record.pk,
        "demonstration": demonstration.pk,
        "verdict": record.verdict,
        "text": record.text,
        "reason": record.reason,
        "client_id": str(record.client_id),
        "created_at": record.created_at,
        "review_state": demonstration.review_state,
        "diff": review.unified_diff(demonstration.text, record.text) if edited else "",
        "diff_segments": review.text_diff(demonstration.text, record.text) if edited else [],
    }


class ReviewNextView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("project", int, required=True),
            OpenApiParameter("render", str, enum=["html"], description="Add sanitised HTML of each text."),
        ],
        responses={200: ReviewTaskSerializer, 204: OpenApiResponse(description="Nothing left for you to review.")},
        description="The oldest demonstration waiting for reviews that you did not write or review. "
        "Where the project asks for no reviews (reviews_required 0), only gold demonstrations are "
        "reviewed: their verdict is the annotator's gold score.",
    )
    def get(self, request):
        project = _row_or_404(Project, project_id_param(request, required=True))
        demonstration = review.review_next(reviewer=request.user, project=project)
        if demonstration is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        demonstration.task.project = project
        html = request.query_params.get("render") == "html"
        return Response(review_task_data(demonstration, html=html))


class ReviewSubmitView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        request=ReviewInSerializer,
        responses={201: ReviewOutSerializer},
        description="Accept the answer, edit it (`text`: the edited answer; the original is kept and "
        "the diff returned) or reject it (`reason` required). With the reviews the project requires, "
        "the answer is accepted when the share of accept and edit verdicts reaches the project's "
        "acceptance share, else rejected; rejected answers never reach SFT. Idempotent by client_id.",
    )
    def post(self, request, pk: int):
        data = ReviewInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record, created = review.review_submit(reviewer=request.user, demonstration_id=pk, **data.validated_data)
        return _created(review_data(record), created)


class AdjudicationQueueView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        responses={200: AdjudicationQueueSerializer},
        description="Completed ranking tasks whose annotators agree on fewer pairs than the project's "
        "adjudication threshold and that no one adjudicated, oldest first (at most 50), with the "
        "prompt, the answers and each annotator's ranking under a pseudonym. Tasks you ranked "
        "yourself are left out.",
    )
    def get(self, request, pk: int):
        project = _row_or_404(Project, pk)
        queue = adjudication.adjudication_queue(project=project, adjudicator=request.user)
        return Response({"project": project.pk, **queue})


class AdjudicationSubmitView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[OpenApiParameter("task_id", int, OpenApiParameter.PATH)],
        request=AdjudicationInSerializer,
        responses={201: AdjudicationOutSerializer},
        description="The final ranking of a completed ranking task (every one of its answer ids once, "
        "best first; a group of several is a tie). It replaces the annotators' consensus in "
        "consensus snapshots. Once per task; idempotent by client_id.",
    )
    def post(self, request, task_id: int):
        data = AdjudicationInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record, created = adjudication.adjudication_submit(
            adjudicator=request.user, task_id=task_id, **data.validated_data
        )
        return _created(
            {
                "id": record.pk,
                "task": record.task_id,
                "ranking": record.groups,
                "note": record.note,
                "client_id": str(record.client_id),
                "created_at": record.created_at,
            },
            created,
        )
