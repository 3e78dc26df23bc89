"""/api/v1/rounds/: admins start, watch, cancel, retry and decide training rounds."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.api.params import RowField, project_id_param
from labeling.api.permissions import IsStaffAdmin
from labeling.api.serializers import JSONObjectField, StrictBooleanField
from labeling.models import Project
from training.rounds import services as rounds
from training.rounds.models import Round, RoundMetric
from training.rounds.selectors import round_waiting_for


class RoundInSerializer(serializers.Serializer):
    project = RowField(queryset=Project.objects.all())
    config = JSONObjectField(
        required=False,
        help_text="Optional per-stage settings: data, sft, reward, policy (algorithm rloo|grpo|dpo|iterative_dpo), evaluate, deploy, "
        "execution (executor local|torchrun|ray, processes). Unknown settings are refused; missing ones take their defaults.",
    )


class DecisionInSerializer(serializers.Serializer):
    deploy = StrictBooleanField(help_text="true: deploy the round's policy; false: keep the current one.")


def _version(version) -> dict | None:
    return None if version is None else {"id": version.pk, "name": version.name, "metrics": version.metrics}


def round_data(round_: Round, *, points: bool = False) -> dict:
    stages = list(round_.stages.all())
    data = {
        "id": round_.pk,
        "project": round_.project_id,
        "number": round_.number,
        "status": round_.status,
        "config": round_.config,
        "error": round_.error,
        "cancel_requested": round_.cancel_requested,
        "deployed": round_.deployed,
        "evaluation": round_.evaluation,
        "base_policy": _version(round_.base_policy),
        "sft_version": _version(round_.sft_version),
        "reward_version": _version(round_.reward_version),
        "policy_version": _version(round_.policy_version),
        "snapshots": list(round_.snapshots.values_list("id", flat=True)),
        "waiting_for": round_waiting_for(round_=round_),
        "created_at": round_.created_at,
        "started_at": round_.started_at,
        "finished_at": round_.finished_at,
        "stages": [
            {
                "name": s.name,
                "status": s.status,
                "step": s.step,
                "total": s.total,
                "metrics": s.metrics,
                "error": s.error,
                "attempts": s.attempts,
                "started_at": s.started_at,
                "heartbeat_at": s.heartbeat_at,
                "finished_at": s.finished_at,
                "log": s.log[-20000:],
            }
            for s in stages
        ],
    }
    if points:
        by_stage: dict[str, list] = {}
        names = {s.pk: s.name for s in stages}
        for stage_id, step, values in RoundMetric.objects.filter(stage__round=round_).values_list(
            "stage_id", "step", "values"
        ):
            by_stage.setdefault(names[stage_id], []).append({"step": step, **values})
        data["curves"] = by_stage
    return data


def _round(pk: int) -> Round:
    return get_object_or_404(
        Round.objects.select_related("base_policy", "sft_version", "reward_version", "policy_version"), pk=pk
    )


class RoundListView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(operation_id="v1_rounds_list", parameters=[OpenApiParameter("project", int)], responses={200: None})
    def get(self, request):
        queryset = Round.objects.select_related("base_policy", "sft_version", "reward_version", "policy_version")
        project_id = project_id_param(request, required=False)
        if project_id is not None:
            queryset = queryset.filter(project_id=project_id)
        return Response([round_data(r) for r in queryset[:100]])

    @extend_schema(request=RoundInSerializer, responses={202: None})
    def post(self, request):
        data = RoundInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        round_ = rounds.round_start(
            project=data.validated_data["project"], config=data.validated_data.get("config"), actor=request.user
        )
        return Response(round_data(_round(round_.pk)), status=status.HTTP_202_ACCEPTED)


class RoundDetailView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(responses={200: None})
    def get(self, request, pk: int):
        return Response(round_data(_round(pk), points=True))


class RoundCancelView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(request=None, responses={200: None})
    def post(self, request, pk: int):
        rounds.round_cancel(round_=_round(pk), actor=request.user)
        return Response(round_data(_round(pk)))


class RoundRetryView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(request=None, responses={202: None})
    def post(self, request, pk: int):
        rounds.round_retry(round_=_round(pk), actor=request.user)
        return Response(round_data(_round(pk)), status=status.HTTP_202_ACCEPTED)


class RoundDecisionView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(request=DecisionInSerializer, responses={200: None})
    def post(self, request, pk: int):
        data = DecisionInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rounds.round_decide(round_=_round(pk), deploy=data.validated_data["deploy"], actor=request.user)
        return Response(round_data(_round(pk)))
