"""The annotator's actions over HTTP. Each view validates input, calls one service or selector,
and serializes the result."""

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import leases, login_limits, selectors, services, submissions
from labeling.api import serializers as s
from labeling.api.params import project_id_param
from labeling.api.parsers import PARSERS
from labeling.api.permissions import CanSeeProjects, IsAnnotator, IsStaffAdmin
from labeling.markdown import markdown_to_html
from labeling.models import Project
from labeling.quality.gold import annotator_gold, leaderboards
from labeling.quality.selectors import annotator_agreement

TASK_ID = OpenApiParameter("task_id", int, OpenApiParameter.PATH)


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token, within the login limits of the login
    page (labeling.login_limits): a locked-out username gets a 429 and no token."""

    throttle_classes = [login_limits.LoginRateThrottle]
    parser_classes = PARSERS  # ObtainAuthToken names its own; these are the same with the deep-JSON fix

    def post(self, request, *args, **kwargs):
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if isinstance(username, str) and login_limits.locked(request._request, username):
            return login_limits.api_locked_response()
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError as error:
            if "authorization" in str(error.get_codes()):  # well formed, but the wrong password
                raise AuthenticationFailed(gettext("Unable to log in with the username and password given.")) from None
            raise


class ProjectListView(APIView):
    """GET: the projects this account works in. POST (admins): create a project."""

    def get_permissions(self):
        return [IsStaffAdmin()] if self.request.method == "POST" else [CanSeeProjects()]

    @extend_schema(responses=s.ProjectSerializer(many=True))
    def get(self, request):
        return Response(s.ProjectSerializer(selectors.projects_for_annotator(request.user), many=True).data)

    @extend_schema(request=s.ProjectSerializer, responses={201: s.ProjectSerializer})
    def post(self, request):
        data = s.ProjectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(fields=data.validated_data, actor=request.user)
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


def _project_param(request) -> Project:
    return get_object_or_404(Project, pk=project_id_param(request, required=True))


class NextTaskView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(
        parameters=[
            OpenApiParameter("project", int, required=True),
            OpenApiParameter("render", str, enum=["html"], description="Add sanitised HTML of each text."),
        ],
        responses={200: s.LeasedTaskSerializer, 204: OpenApiResponse(description="Nothing left for you.")},
    )
    def get(self, request):
        assignment = leases.task_next(annotator=request.user, project_id=project_id_param(request, required=True))
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        html = request.query_params.get("render") == "html"
        return Response(s.leased_task_data(assignment, html=html))


def _submission_response(record, created: bool, data) -> Response:
    response = Response(data(record), status=status.HTTP_201_CREATED)
    if not created:
        response["Idempotent-Replayed"] = "true"
    return response


class DemonstrationSubmitView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(
        parameters=[TASK_ID], request=s.DemonstrationInSerializer, responses={201: s.DemonstrationOutSerializer}
    )
    def post(self, request, task_id: int):
        data = s.DemonstrationInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record, created = submissions.demonstration_submit(
            annotator=request.user, task_id=task_id, **data.validated_data
        )
        return _submission_response(record, created, s.demonstration_data)


class RankingSubmitView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(parameters=[TASK_ID], request=s.RankingInSerializer, responses={201: s.RankingOutSerializer})
    def post(self, request, task_id: int):
        data = s.RankingInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record, created = submissions.ranking_submit(annotator=request.user, task_id=task_id, **data.validated_data)
        return _submission_response(record, created, s.ranking_data)


class SkipView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(parameters=[TASK_ID], request=s.SkipInSerializer, responses={200: None})
    def post(self, request, task_id: int):
        data = s.SkipInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        leases.task_skip(annotator=request.user, task_id=task_id, reason=data.validated_data.get("reason", ""))
        return Response({"detail": gettext("Skipped; this task will not be served to you again.")})


class UnskipView(APIView):
    """Take back a task I skipped, while it is still open and has a free place: it is leased to me again."""

    permission_classes = [IsAnnotator]

    @extend_schema(parameters=[TASK_ID], request=None, responses={200: s.UnskipOutSerializer})
    def post(self, request, task_id: int):
        assignment, reopened = leases.task_unskip(annotator=request.user, task_id=task_id)
        task = assignment.task
        response = Response(
            {
                "task": task.pk,
                "project": task.project_id,
                "kind": task.kind,
                "lease_expires_at": assignment.lease_expires_at,
                "detail": gettext("Task %(task)s is yours again: it is leased to you in %(project)s.")
                % {"task": task.pk, "project": task.project.name},
            }
        )
        if not reopened:
            response["Idempotent-Replayed"] = "true"
        return response


class HeartbeatView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(parameters=[TASK_ID], request=None, responses={200: None})
    def post(self, request, task_id: int):
        assignment = leases.lease_heartbeat(annotator=request.user, task_id=task_id)
        return Response({"lease_expires_at": assignment.lease_expires_at})


class DraftView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(parameters=[TASK_ID], request=s.DraftInSerializer, responses={200: None})
    def put(self, request, task_id: int):
        data = s.DraftInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = leases.draft_save(annotator=request.user, task_id=task_id, text=data.validated_data["text"])
        return Response({"saved_at": assignment.draft_saved_at, "lease_expires_at": assignment.lease_expires_at})


class ProgressView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(parameters=[OpenApiParameter("project", int)], responses={200: None})
    def get(self, request):
        project = _project_param(request) if "project" in request.query_params else None
        recent = selectors.recent_submissions(annotator=request.user)
        skipped = selectors.skipped_tasks(annotator=request.user, project=project)
        return Response(
            {
                **selectors.annotator_progress(annotator=request.user, project=project),
                "agreement": annotator_agreement(annotator=request.user, project=project),
                "gold": annotator_gold(annotator=request.user, project=project),
                "leaderboards": leaderboards(annotator=request.user, project=project),
                "recent": [
                    {
                        "kind": item["kind"],
                        "id": item["record"].pk,
                        "task": item["record"].task_id,
                        "created_at": item["created_at"],
                        "editable": item["editable"],
                        "edit_until": item["edit_until"],
                    }
                    for item in recent
                ],
                "skipped": [
                    {
                        "task": item["task"].pk,
                        "project": item["project"].pk,
                        "kind": item["task"].kind,
                        "skipped_at": item["skipped_at"],
                        "reason": item["reason"],
                        "can_unskip": item["refusal"] is None,
                        "refusal": item["refusal"],
                    }
                    for item in skipped
                ],
            }
        )


class DemonstrationEditView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(request=s.DemonstrationEditSerializer, responses={200: s.DemonstrationOutSerializer})
    def patch(self, request, pk: int):
        data = s.DemonstrationEditSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record = submissions.demonstration_edit(
            annotator=request.user, demonstration_id=pk, text=data.validated_data["text"]
        )
        return Response(s.DemonstrationOutSerializer(record).data)


class RankingEditView(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(request=s.RankingEditSerializer, responses={200: s.RankingOutSerializer})
    def patch(self, request, pk: int):
        data = s.RankingEditSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record = submissions.ranking_edit(annotator=request.user, ranking_id=pk, **data.validated_data)
        return Response(s.RankingOutSerializer(record).data)


class MarkdownPreviewView(APIView):
    """Render markdown exactly as answers are shown (sanitised), for the editor's preview."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=s.MarkdownInSerializer, responses={200: None})
    def post(self, request):
        data = s.MarkdownInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"html": markdown_to_html(data.validated_data["text"])})


class ProjectStatsView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(responses={200: None})
    def get(self, request, pk: int):
        project = get_object_or_404(Project, pk=pk)
        stats = selectors.project_stats(project=project)
        stats["open_leases"] = [
            {"task": a.task_id, "annotator": a.annotator.username, "lease_expires_at": a.lease_expires_at}
            for a in stats["open_leases"]
        ]
        return Response({"project": s.ProjectSerializer(project).data, **stats})


class ProjectPauseView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(request=s.PauseInSerializer, responses={200: s.ProjectSerializer})
    def post(self, request, pk: int):
        data = s.PauseInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = get_object_or_404(Project, pk=pk)
        services.project_pause(project=project, paused=data.validated_data["paused"], actor=request.user)
        return Response(s.ProjectSerializer(project).data)
