"""The datasets page: researchers and admins freeze snapshots and download them."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext, gettext_lazy

from labeling.errors import LabelingError
from labeling.models import Project
from labeling.roles import researcher_page
from labeling.validation import row_id
from training.datasets.models import DatasetSnapshot
from training.datasets.services import snapshot_build_enqueue, snapshot_create

BOOLEAN_FIELDS = ("exclude_flagged", "exclude_none_acceptable", "margin", "weighted", "exclude_held")
SPLITS = ("exclude_held_out", "only_held_out")  # the "Prompts" choice: the training or the evaluation split
VALUE_FIELDS = ("date_from", "date_to", "round", "model_version", "min_agreement")


def _filters_from(post) -> dict:
    filters = {key: post[key].strip() for key in VALUE_FIELDS if post.get(key, "").strip()}
    filters.update({key: True for key in BOOLEAN_FIELDS if post.get(key)})
    if post.get("split") in SPLITS:
        filters[post["split"]] = True
    return filters


@researcher_page(gettext_lazy("Only researchers and admins can export datasets."))
def datasets(request):
    if request.method == "POST":
        project_id = row_id(request.POST.get("project", ""))
        project = Project.objects.filter(pk=project_id).first() if project_id else None
        try:
            if project is None:
                raise LabelingError(gettext("Choose a project."), field="project")
            snapshot = snapshot_create(
                project=project,
                kind=request.POST.get("kind", ""),
                format=request.POST.get("format", "jsonl"),
                pair_mode=request.POST.get("pair_mode", "all"),
                filters=_filters_from(request.POST),
                actor=request.user,
            )
        except LabelingError as error:
            messages.error(request, error.message)
        else:
            snapshot_build_enqueue(snapshot)
            messages.info(
                request,
                gettext("Snapshot %(snapshot_pk)s is being built; this page shows its progress.")
                % {"snapshot_pk": snapshot.pk},
            )
            return redirect("datasets")
    snapshots = DatasetSnapshot.objects.select_related("project", "created_by")[:200]
    building = any(s.status in ("pending", "running") for s in snapshots)
    return render(
        request,
        "training/datasets.html",
        {
            "projects": Project.objects.order_by("name"),
            "snapshots": snapshots,
            "building": building,
            "kinds": DatasetSnapshot.Kind.values,
            "form": request.POST if request.method == "POST" else {},
        },
    )
