"""The Models page (admins): a project's versions and lineage, deploy and roll back, generation
jobs. Each view checks the role, calls one service or selector, and renders."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from labeling.errors import LabelingError
from labeling.models import Project
from labeling.roles import admin_page
from training.registry import generation, selectors, services
from training.registry.models import GenerationJob, ModelVersion


@admin_page("Only admins can manage model versions.")
def model_versions(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    jobs = list(selectors.generation_jobs(project=project))
    context = {
        "project": project,
        "lineage": selectors.version_lineage(project=project),
        "deployed": selectors.deployed_policy(project=project),
        "deployments": selectors.deployment_history(project=project),
        "deployed_before": selectors.versions_deployed_before(project=project),
        "jobs": jobs,
        "job_active": any(job.status in GenerationJob.ACTIVE for job in jobs),
    }
    return render(request, "training/model_versions.html", context)


@admin_page("Only admins can manage model versions.")
@require_POST
def version_deploy(request, pk: int, version_id: int):
    version = get_object_or_404(ModelVersion, pk=version_id, project_id=pk)
    try:
        deployment, switched = services.policy_deploy(version=version, actor=request.user)
    except LabelingError as error:
        messages.error(request, error.message)
        return redirect("model-versions", pk=pk)
    if not switched:
        messages.info(request, f"{version} is already deployed.")
    elif deployment.rollback:
        messages.success(request, f"Rolled back to {version}. New ranking tasks will come from it.")
    else:
        messages.success(request, f"Deployed {version}. New ranking tasks will come from it.")
    return redirect("model-versions", pk=pk)


@admin_page("Only admins can manage model versions.")
@require_POST
def generation_start(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    limit = request.POST.get("limit", "").strip()
    try:
        job = generation.generation_job_start(
            project=project, actor=request.user, limit=int(limit) if limit.isdigit() and int(limit) > 0 else None
        )
    except LabelingError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Generation job {job.pk} queued on the gpu queue with {job.model_version}.")
    return redirect("model-versions", pk=pk)


@admin_page("Only admins can manage model versions.")
@require_POST
def generation_cancel(request, pk: int, job_id: int):
    job = get_object_or_404(GenerationJob, pk=job_id, project_id=pk)
    if generation.generation_job_cancel(job=job, actor=request.user):
        messages.info(request, f"Job {job.pk} cancelled; the tasks it made so far stay.")
    return redirect("model-versions", pk=pk)
