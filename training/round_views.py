"""Round pages for admins: start a round with every stage's settings, and watch it live."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render

from labeling import roles
from labeling.errors import LabelingError
from labeling.models import Project
from training import rounds, selectors
from training.round_models import Round

SECTION_TITLES = {
    "data": "Data (the snapshot's filter)",
    "sft": "Supervised fine-tuning",
    "reward": "Reward model (K-wise)",
    "policy": "Policy optimisation",
    "evaluate": "Evaluation",
    "deploy": "Deploy",
}


def _staff(request) -> None:
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins can run training rounds.")


def _form_fields(config: dict) -> list[dict]:
    """One input per setting, typed by its default."""
    sections = []
    for name, settings in config.items():
        fields = []
        for key, value in settings.items():
            kind = "checkbox" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "text"
            step = "any" if isinstance(value, float) else "1"
            fields.append(
                {"name": f"{name}.{key}", "label": key.replace("_", " "), "value": value, "kind": kind, "step": step}
            )
        sections.append({"name": name, "title": SECTION_TITLES.get(name, name), "fields": fields})
    return sections


def _config_from_post(post, defaults: dict) -> dict:
    config: dict = {}
    for section, settings in defaults.items():
        chosen = {}
        for key, default in settings.items():
            field = f"{section}.{key}"
            if isinstance(default, bool):
                chosen[key] = field in post
                continue
            raw = post.get(field, "").strip()
            if raw == "":
                continue
            if isinstance(default, int) or isinstance(default, float):
                try:
                    chosen[key] = int(raw) if isinstance(default, int) and raw.lstrip("-").isdigit() else float(raw)
                except ValueError:
                    raise LabelingError(
                        f"{section} {key.replace('_', ' ')} must be a number.", field="config"
                    ) from None
                if isinstance(default, int) and not float(chosen[key]).is_integer():
                    raise LabelingError(f"{section} {key.replace('_', ' ')} must be a whole number.", field="config")
                chosen[key] = int(chosen[key]) if isinstance(default, int) else chosen[key]
            elif default is None:
                chosen[key] = float(raw) if raw.replace(".", "", 1).isdigit() else raw
            else:
                chosen[key] = raw
        config[section] = chosen
    return config


@login_required
def project_rounds(request, pk: int):
    _staff(request)
    project = get_object_or_404(Project, pk=pk)
    defaults = rounds.round_config_clean(None, project=project)
    if request.method == "POST":
        try:
            round_ = rounds.round_start(
                project=project, config=_config_from_post(request.POST, defaults), actor=request.user
            )
        except LabelingError as error:
            messages.error(request, error.message)
        else:
            return redirect("round", round_.pk)
    return render(
        request,
        "training/rounds.html",
        {
            "project": project,
            "rounds": Round.objects.filter(project=project).select_related("policy_version")[:50],
            "sections": _form_fields(defaults),
            "deployed": selectors.deployed_policy(project=project),
        },
    )


@login_required
def round_detail(request, pk: int):
    _staff(request)
    round_ = get_object_or_404(Round.objects.select_related("project"), pk=pk)
    return render(request, "training/round.html", {"round": round_, "project": round_.project})
