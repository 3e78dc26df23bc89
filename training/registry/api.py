"""The model registry over HTTP: versions (researchers and admins read), deploys and generation
jobs (admins). Views validate input, call one service or selector, serialize the result."""

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.api import permissions
from labeling.api.params import project_id_param
from labeling.api.permissions import IsStaffAdmin
from labeling.api.serializers import StrictIntegerField
from labeling.models import Project
from training.registry import generation, selectors, services
from training.registry.models import GenerationJob, ModelVersion

IsResearcher = permissions.IsResearcher.saying(gettext_lazy("Only researchers and admins can read the model registry."))


class ModelVersionSerializer(serializers.ModelSerializer):
    deployed = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "project",
            "name",
            "kind",
            "parent",
            "round_number",
            "storage_path",
            "content_hash",
            "config",
            "metrics",
            "status",
            "created_at",
            "updated_at",
            "deployed",
        ]

    def get_deployed(self, version) -> bool:
        return version.pk in self.context.get("deployed_ids", set())


class GenerationJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "project",
            "model_version",
            "status",
            "sampling",
            "limit",
            "prompts_total",
            "prompts_done",
            "tasks_created",
            "prompts_skipped",
            "attempts",
            "yielded_to_stage",
            "backend",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class GenerationStartSerializer(serializers.Serializer):
    project = StrictIntegerField()
    limit = StrictIntegerField(required=False, min_value=1)
    sampling = serializers.DictField(required=False)


def _deployed_ids(projects) -> set[int]:
    return {v.pk for p in projects if (v := selectors.deployed_policy(project=p)) is not None}


def _project_from_query(request) -> Project | None:
    project_id = project_id_param(request, required=False)
    return None if project_id is None else get_object_or_404(Project, pk=project_id)


class ModelVersionListView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(parameters=[OpenApiParameter("project", int)], responses=ModelVersionSerializer(many=True))
    def get(self, request):
        project = _project_from_query(request)
        versions = ModelVersion.objects.select_related("project").order_by("id")
        projects = [project] if project else list(Project.objects.all())
        if project is not None:
            versions = versions.filter(project=project)
        context = {"deployed_ids": _deployed_ids(projects)}
        return Response(ModelVersionSerializer(versions, many=True, context=context).data)


class ModelVersionDeployView(APIView):
    """Deploy this version as its project's policy (rolling back is deploying an earlier one)."""

    permission_classes = [IsStaffAdmin]

    @extend_schema(request=None, responses=ModelVersionSerializer)
    def post(self, request, pk: int):
        version = get_object_or_404(ModelVersion, pk=pk)
        deployment, switched = services.policy_deploy(version=version, actor=request.user)
        data = ModelVersionSerializer(version, context={"deployed_ids": {version.pk}}).data
        return Response(
            {**data, "switched": switched, "rollback": deployment.rollback, "previous": deployment.previous_id}
        )


class GenerationJobListView(APIView):
    permission_classes = [IsStaffAdmin]

    @extend_schema(parameters=[OpenApiParameter("project", int)], responses=GenerationJobSerializer(many=True))
    def get(self, request):
        jobs = GenerationJob.objects.all()
        if (project := _project_from_query(request)) is not None:
            jobs = jobs.filter(project=project)
        return Response(GenerationJobSerializer(jobs[:100], many=True).data)

    @extend_schema(request=GenerationStartSerializer, responses={201: GenerationJobSerializer})
    def post(self, request):
        data = GenerationStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = get_object_or_404(Project, pk=data.validated_data["project"])
        job = generation.generation_job_start(
            project=project,
            actor=request.user,
            sampling=data.validated_data.get("sampling"),
            limit=data.validated_data.get("limit"),
        )
        return Response(GenerationJobSerializer(job).data, status=status.HTTP_201_CREATED)
