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
# The form's groups, in the order a round runs them: (title, what the stage does).
SECTION_TITLES = {
    "data": ("Data", "Which labels the round's snapshots take."),
    "sft": ("Supervised fine-tuning (SFT)", "Trains the deployed policy on the teachers' demonstrations."),
    "reward": ("Reward model", "Learns the rankings: which answers people prefer."),
    "policy": ("Policy optimisation", "Improves the SFT model against the reward model or the preferences."),
    "evaluate": ("Evaluation", "The new policy and the deployed one answer held-out prompts; the reward model judges."),
    "deploy": ("Deploy", "When the new policy replaces the deployed one by itself."),
}
# Labels where the setting's name does not read as English by itself.
FIELD_LABELS = {
    "auto": "Deploy automatically",
    "eval_fraction": "Held-out share",
    "exclude_flagged": "Leave out flagged answers",
    "exclude_held": "Leave out annotators on hold",
    "exclude_none_acceptable": "Leave out 'none acceptable' rankings",
    "generations_per_prompt": "Answers per prompt",
    "gradient_accumulation": "Gradient accumulation",
    "gradient_checkpointing": "Gradient checkpointing",
    "group_by_length": "Group by length",
    "kl_beta": "KL weight (beta)",
    "kl_budget": "KL budget (nats per answer)",
    "length_control": "Length control",
    "lora": "Train LoRA adapters",
    "lora_rank": "LoRA rank",
    "max_answer_tokens": "Answer tokens kept",
    "max_completion_length": "Tokens per sampled answer",
    "max_length": "Tokens kept",
    "max_new_tokens": "Tokens per answer",
    "max_prompt_tokens": "Prompt tokens kept",
    "min_agreement": "Minimum annotator agreement",
    "packed": "Packed rankings",
    "per_device_batch_size": "Batch size (per device)",
    "prompts": "Prompts",
    "prompts_per_step": "Prompts per step",
    "rankings_per_step": "Rankings per step",
    "reward_normalize": "Normalise rewards",
    "seed": "Random seed",
    "threshold": "Win rate threshold",
    "warmup_ratio": "Warm-up share",
}
FIELD_HELP = {"seed": "the same seed and settings give the same run"}
CHOICE_LABELS = {
    "policy.algorithm": {
        "dpo": "DPO (offline, on the rankings)",
        "iterative_dpo": "Iterative DPO (samples, scored by the reward model)",
        "rloo": "RLOO (online RL)",
        "grpo": "GRPO (online RL)",
    },
    "policy.pairs": {"all": "every ordered pair", "best_worst": "best answer against worst"},
    "data.rankings": {
        "weighted": "every ranking, weighted by reliability",
        "consensus": "one consensus ranking per task",
        "plain": "every ranking alike",
    },
    "data.demonstrations": {"new": "only new demonstrations", "all": "all demonstrations again"},
}


def _form_fields(config: dict) -> list[dict]:
    """One group per stage, one input per setting, typed and bounded by its declaration
    (training.ml.options), with a readable label and its help text."""
    sections = []
    for name, values in config.items():
        specs = options.field_specs(SECTIONS[name])
        fields = [_form_field(name, specs[key], value) for key, value in values.items()]
        title, about = SECTION_TITLES.get(name, (name, ""))
        sections.append({"name": name, "title": title, "about": about, "fields": fields})
    return sections


def _sentence(help_text: str) -> str:
    """A setting's help as a sentence; one that starts by naming algorithms ("dpo: …") keeps their case."""
    if not help_text:
        return ""
    if not help_text.startswith(("rloo", "grpo", "dpo", "iterative_dpo")):
        help_text = help_text[0].upper() + help_text[1:]
    return help_text if help_text.endswith(".") else help_text + "."


def _form_field(section: str, spec: options.FieldSpec, value) -> dict:
    kind = (
        "checkbox"
        if spec.kind is bool
        else "select"
        if spec.choices
        else "number"
        if spec.kind in (int, float)
        else "text"
    )
    name = f"{section}.{spec.name}"
    labels = CHOICE_LABELS.get(name, {})
    return {
        "name": name,
        "id": f"setting-{section}-{spec.name}",
        "label": FIELD_LABELS.get(spec.name, spec.name.replace("_", " ").capitalize()),
        "value": "" if value is None else value,
        "kind": kind,
        "step": "any" if spec.kind is float else "1",
        "min": spec.low,
        "max": spec.high,
        "help": _sentence(spec.help or FIELD_HELP.get(spec.name, "")),
        "choices": [(choice, labels.get(choice, choice)) for choice in spec.choices or ()],
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


@admin_page(ADMINS_ONLY)
def round_deploy(request, pk: int):
    """The round page's deploy button: the confirmation of the round's new policy, with its evaluation."""
    round_ = get_object_or_404(Round, pk=pk, policy_version__isnull=False)
    return redirect("model-version-deploy", pk=round_.project_id, version_id=round_.policy_version_id)
