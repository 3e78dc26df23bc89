"""/api/v1/datasets/: researchers and admins create, list and download snapshots. Snapshots are
immutable: there is no update or delete through the API."""

import zipfile
from pathlib import Path

from django.db import transaction
from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from labeling.api import permissions
from labeling.api.params import RowField, project_id_param
from labeling.api.serializers import JSONObjectField
from labeling.models import Project
from training.datasets.models import DatasetSnapshot
from training.datasets.services import snapshot_build_enqueue, snapshot_create, snapshot_file, snapshot_manifest

IsResearcher = permissions.IsResearcher.saying(gettext_lazy("Only researchers and admins can export datasets."))


class SnapshotInSerializer(serializers.Serializer):
    project = RowField(queryset=Project.objects.all())
    kind = serializers.ChoiceField(choices=DatasetSnapshot.Kind.values)
    format = serializers.ChoiceField(choices=DatasetSnapshot.Format.values, default="jsonl")
    pair_mode = serializers.ChoiceField(choices=DatasetSnapshot.PairMode.values, default="all")
    filters = JSONObjectField(
        required=False,
        help_text="date_from, date_to (YYYY-MM-DD), round, model_version, min_agreement (0-1), "
        "exclude_flagged, exclude_none_acceptable, margin, weighted, exclude_held (the labels of annotators "
        "on hold), exclude_held_out, only_held_out (booleans; the last two leave out, or keep only, the "
        "project's frozen evaluation split). Gold tasks' labels are always left out.",
    )


class SnapshotSerializer(serializers.ModelSerializer):
    project_name = serializers.CharField(source="project.name", read_only=True)
    download_url = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = DatasetSnapshot
        fields = [
            "id",
            "project",
            "project_name",
            "kind",
            "format",
            "filters",
            "pair_mode",
            "status",
            "rows_done",
            "rows_total",
            "counts",
            "files",
            "code_version",
            "error",
            "created_at",
            "finished_at",
            "download_url",
        ]

    def _url(self, name, snapshot, *extra):
        return reverse(name, args=[snapshot.pk, *extra], request=self.context.get("request"))

    def get_download_url(self, snapshot) -> str | None:
        return self._url("api-dataset-download", snapshot) if snapshot.status == "ready" else None

    def get_files(self, snapshot) -> list[dict]:
        return [{**f, "url": self._url("api-dataset-file", snapshot, f["name"])} for f in snapshot.files]


class SnapshotListView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(parameters=[OpenApiParameter("project", int)], responses=SnapshotSerializer(many=True))
    def get(self, request):
        snapshots = DatasetSnapshot.objects.select_related("project")
        project_id = project_id_param(request, required=False)
        if project_id is not None:
            snapshots = snapshots.filter(project_id=project_id)
        return Response(SnapshotSerializer(snapshots[:500], many=True, context={"request": request}).data)

    @extend_schema(request=SnapshotInSerializer, responses={202: SnapshotSerializer})
    def post(self, request):
        data = SnapshotInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            snapshot = snapshot_create(actor=request.user, **data.validated_data)
            snapshot_build_enqueue(snapshot)
        return Response(
            SnapshotSerializer(snapshot, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


class SnapshotDetailView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(responses=SnapshotSerializer)
    def get(self, request, pk: int):
        snapshot = get_object_or_404(DatasetSnapshot.objects.select_related("project"), pk=pk)
        return Response(SnapshotSerializer(snapshot, context={"request": request}).data)


def _checksum_headers(response, sha256: str):
    response["X-Checksum-SHA256"] = sha256
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


class SnapshotFileView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(responses={200: OpenApiResponse(description="The file; X-Checksum-SHA256 holds its hash.")})
    def get(self, request, pk: int, name: str):
        snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
        path, sha256 = snapshot_file(snapshot=snapshot, name=name)
        response = FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)  # noqa: SIM115
        return _checksum_headers(response, sha256)


class _Sink:
    """A write-only stream that hands what was written to a generator, chunk by chunk."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _zip_stream(snapshot, paths: list[Path]):
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            with (
                archive.open(f"snapshot-{snapshot.pk}/{path.name}", "w", force_zip64=True) as member,
                open(path, "rb") as source,
            ):
                while chunk := source.read(1 << 20):
                    member.write(chunk)
                    yield sink.take()
        archive.writestr(f"snapshot-{snapshot.pk}/manifest.json", snapshot_manifest(snapshot))
    yield sink.take()


class SnapshotDownloadView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(responses={200: OpenApiResponse(description="A zip of the data file, README.md and manifest.json.")})
    def get(self, request, pk: int):
        snapshot = get_object_or_404(DatasetSnapshot.objects.select_related("project"), pk=pk)
        paths = [snapshot_file(snapshot=snapshot, name=f["name"])[0] for f in snapshot.files]  # verifies every hash
        response = StreamingHttpResponse(_zip_stream(snapshot, paths), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="yushan-snapshot-{snapshot.pk}-{snapshot.kind}.zip"'
        return response
