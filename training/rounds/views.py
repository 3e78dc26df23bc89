"""Round pages for admins: start a round with every stage's settings, and watch it live."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render

from labeling.errors import LabelingError
from labeling.models import Project
from labeling.roles import admin_page
from training.ml import options
from training.registry import selectors
from training.rounds import services as rounds
from training.rounds.config import SECTIONS, round_config_clean, round_config_from_form
from training.rounds.models import Round

ADMINS_ONLY = "Only admins can run training rounds."
SECTION_TITLES = {
    "data": "Data (the snapshot's filter)",
    "sft": "Supervised fine-tuning",
    "reward": "Reward model (K-wise)",
    "policy": "Policy optimisation",
    "evaluate": "Evaluation",
    "deploy": "Deploy",
}


def _form_fields(config: dict) -> list[dict]:
    """One input per setting, typed and bounded by its declaration (training.ml.options)."""
    sections = []
    for name, values in config.items():
        specs = options.field_specs(SECTIONS[name])
        fields = [_form_field(name, specs[key], value) for key, value in values.items()]
        sections.append({"name": name, "title": SECTION_TITLES.get(name, name), "fields": fields})
    return sections


def _form_field(section: str, spec: options.FieldSpec, value) -> dict:
    kind = "checkbox" if spec.kind is bool else "number" if spec.kind in (int, float) else "text"
    return {
        "name": f"{section}.{spec.name}",
        "label": spec.name.replace("_", " "),
        "value": "" if value is None else value,
        "kind": kind,
        "step": "any" if spec.kind is float else "1",
        "min": spec.low,
        "max": spec.high,
        "help": spec.help,
        "choices": spec.choices,
    }


@admin_page(ADMINS_ONLY)
def project_rounds(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    defaults = round_config_clean(None, project=project)
    if request.method == "POST":
        try:
            config = round_config_from_form(request.POST, project=project)
            round_ = rounds.round_start(project=project, config=config, actor=request.user)
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


@admin_page(ADMINS_ONLY)
def round_detail(request, pk: int):
    round_ = get_object_or_404(Round.objects.select_related("project"), pk=pk)
    return render(request, "training/round.html", {"round": round_, "project": round_.project})
