"""GET /api/v1/projects/<id>/agreement/: the project's agreement report, for admins and researchers."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.api.permissions import IsResearcher
from labeling.models import Project
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
