"""The Models page (admins): a project's versions and lineage, deploy and roll back (through a
confirmation that shows the version's evaluation), generation jobs. Each view checks the role,
calls one service or selector, and renders."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_POST

from labeling.errors import LabelingError
from labeling.models import Project
from labeling.roles import admin_page
from training.registry import generation, selectors, services
from training.registry.models import GenerationJob, ModelVersion
from training.rounds import selectors as round_selectors
from training.rounds import services as rounds

ADMINS_ONLY = gettext_lazy("Only admins can manage model versions.")
DEPLOYED_MESSAGES = {
    "deploy": gettext_lazy("Deployed %(version)s. New ranking tasks will come from it."),
    "rollback": gettext_lazy("Rolled back to %(version)s. New ranking tasks will come from it."),
    "return": gettext_lazy("Returned to %(version)s. New ranking tasks will come from it."),
}


@admin_page(ADMINS_ONLY)
def model_versions(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    deployed = selectors.deployed_policy(project=project)
    deployed_before = selectors.versions_deployed_before(project=project)
    lineage = selectors.version_lineage(project=project)
    for row in lineage:
        row.action = selectors.deploy_action(version=row.version, deployed=deployed, deployed_before=deployed_before)
    jobs = list(selectors.generation_jobs(project=project))
    now = timezone.now()
    for job in jobs:
        job.time_left = selectors.generation_job_time_left(job, now=now)
    context = {
        "project": project,
        "lineage": lineage,
        "deployed": deployed,
        "deployments": selectors.deployment_history(project=project),
        "jobs": jobs,
        "job_active": any(job.status in GenerationJob.ACTIVE for job in jobs),
    }
    return render(request, "training/model_versions.html", context)


@admin_page(ADMINS_ONLY)
def version_deploy(request, pk: int, version_id: int):
    """GET: the confirmation, with the version's evaluation. POST with confirm=yes: deploy it. A
    POST without the confirmation (a stale form, a script) deploys nothing and shows the page.

    A policy whose round waits for an admin's decision is deployed through that decision, so the
    round finishes and the next candidates come from the new policy, as on the round page."""
    version = get_object_or_404(ModelVersion.objects.select_related("project"), pk=version_id, project_id=pk)
    deployed = selectors.deployed_policy(project=version.project)
    action = selectors.deploy_action(
        version=version, deployed=deployed, deployed_before=selectors.versions_deployed_before(project=version.project)
    )
    waiting_round = round_selectors.round_awaiting_decision_on(version=version)
    if request.method == "POST":
        if request.POST.get("confirm") == "yes":
            return _deploy_confirmed(request, version, action, waiting_round)
        messages.warning(request, gettext("Nothing was deployed: deploying needs the confirmation below."))
    context = {
        "project": version.project,
        "version": version,
        "deployed": deployed,
        "action": action,
        "evaluation": round_selectors.version_evaluation(version=version),
        "waiting_round": waiting_round,
        "deployable": version.kind == ModelVersion.Kind.POLICY and version.status == ModelVersion.Status.READY,
    }
    return render(request, "training/deploy_confirm.html", context, status=400 if request.method == "POST" else 200)


def _deploy_confirmed(request, version, action, waiting_round):
    try:
        if waiting_round is not None:
            rounds.round_decide(round_=waiting_round, deploy=True, actor=request.user)
            switched = True
        else:
            _, switched = services.policy_deploy(version=version, actor=request.user)
    except LabelingError as error:
        messages.error(request, error.message)
        return redirect("model-versions", pk=version.project_id)
    if not switched:
        messages.info(request, gettext("%(version)s is already deployed.") % {"version": version})
    else:
        messages.success(request, DEPLOYED_MESSAGES[action.kind] % {"version": version})
    if waiting_round is not None:
        return redirect("round", waiting_round.pk)
    return redirect("model-versions", pk=version.project_id)


@admin_page(ADMINS_ONLY)
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
        messages.success(
            request,
            gettext("Generation job %(job_pk)s queued on the gpu queue with %(model_version)s.")
            % {"job_pk": job.pk, "model_version": job.model_version},
        )
    return redirect("model-versions", pk=pk)


@admin_page(ADMINS_ONLY)
@require_POST
def generation_cancel(request, pk: int, job_id: int):
    job = get_object_or_404(GenerationJob, pk=job_id, project_id=pk)
    if generation.generation_job_cancel(job=job, actor=request.user):
        messages.info(request, gettext("Job %(job_pk)s cancelled; the tasks it made so far stay.") % {"job_pk": job.pk})
    return redirect("model-versions", pk=pk)
