"""Round pages for admins: start a round with every stage's settings, and watch it live."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext, gettext_lazy

from labeling.errors import LabelingError
from labeling.models import Project
from labeling.roles import admin_page
from training.ml import options
from training.registry import selectors
from training.rounds import services as rounds
from training.rounds.config import SECTIONS, round_config_clean, round_config_from_form
from training.rounds.models import Round

ADMINS_ONLY = gettext_lazy("Only admins can run training rounds.")
# The form's groups, in the order a round runs them: (title, what the stage does).
SECTION_TITLES = {
    "data": (gettext_lazy("Data"), gettext_lazy("Which labels the round's snapshots take.")),
    "sft": (
        gettext_lazy("Supervised fine-tuning (SFT)"),
        gettext_lazy("Trains the deployed policy on the teachers' demonstrations."),
    ),
    "reward": (gettext_lazy("Reward model"), gettext_lazy("Learns the rankings: which answers people prefer.")),
    "policy": (
        gettext_lazy("Policy optimisation"),
        gettext_lazy("Improves the SFT model against the reward model or the preferences."),
    ),
    "evaluate": (
        gettext_lazy("Evaluation"),
        gettext_lazy("The new policy and the deployed one answer held-out prompts; the reward model judges."),
    ),
    "deploy": (gettext_lazy("Deploy"), gettext_lazy("When the new policy replaces the deployed one by itself.")),
    "execution": (
        gettext_lazy("Execution"),
        gettext_lazy(
            "Where SFT, the reward model and the policy stage run: the worker's process, its GPUs, or a Ray cluster."
        ),
    ),
}
# Every setting's label, in the page's language ("auto": "Deploy automatically").
FIELD_LABELS = {
    "algorithm": gettext_lazy("Algorithm"),
    "demonstrations": gettext_lazy("Demonstrations"),
    "epochs": gettext_lazy("Epochs"),
    "executor": gettext_lazy("Executor"),
    "iterations": gettext_lazy("Iterations"),
    "learning_rate": gettext_lazy("Learning rate"),
    "pairs": gettext_lazy("Pairs"),
    "rankings": gettext_lazy("Rankings"),
    "steps": gettext_lazy("Steps"),
    "temperature": gettext_lazy("Temperature"),
    "weight_decay": gettext_lazy("Weight decay"),
    "auto": gettext_lazy("Deploy automatically"),
    "eval_fraction": gettext_lazy("Held-out share"),
    "exclude_flagged": gettext_lazy("Leave out flagged answers"),
    "exclude_held": gettext_lazy("Leave out annotators on hold"),
    "exclude_none_acceptable": gettext_lazy("Leave out 'none acceptable' rankings"),
    "generations_per_prompt": gettext_lazy("Answers per prompt"),
    "gradient_accumulation": gettext_lazy("Gradient accumulation"),
    "gradient_checkpointing": gettext_lazy("Gradient checkpointing"),
    "group_by_length": gettext_lazy("Group by length"),
    "kl_beta": gettext_lazy("KL weight (beta)"),
    "kl_budget": gettext_lazy("KL budget (nats per answer)"),
    "length_control": gettext_lazy("Length control"),
    "lora": gettext_lazy("Train LoRA adapters"),
    "lora_rank": gettext_lazy("LoRA rank"),
    "max_answer_tokens": gettext_lazy("Answer tokens kept"),
    "max_completion_length": gettext_lazy("Tokens per sampled answer"),
    "max_length": gettext_lazy("Tokens kept"),
    "max_new_tokens": gettext_lazy("Tokens per answer"),
    "max_prompt_tokens": gettext_lazy("Prompt tokens kept"),
    "min_agreement": gettext_lazy("Minimum annotator agreement"),
    "packed": gettext_lazy("Packed rankings"),
    "per_device_batch_size": gettext_lazy("Batch size (per device)"),
    "prompts": gettext_lazy("Prompts"),
    "processes": gettext_lazy("Processes"),
    "prompts_per_step": gettext_lazy("Prompts per step"),
    "rankings_per_step": gettext_lazy("Rankings per step"),
    "sampler": gettext_lazy("Sampler"),
    "samples": gettext_lazy("Answers per prompt and policy"),
    "reward_normalize": gettext_lazy("Normalise rewards"),
    "seed": gettext_lazy("Random seed"),
    "threshold": gettext_lazy("Win rate threshold"),
    "warmup_ratio": gettext_lazy("Warm-up share"),
}
FIELD_HELP = {"seed": gettext_lazy("the same seed and settings give the same run")}
CHOICE_LABELS = {
    "policy.algorithm": {
        "dpo": gettext_lazy("DPO (offline, on the rankings)"),
        "iterative_dpo": gettext_lazy("Iterative DPO (samples, scored by the reward model)"),
        "rloo": gettext_lazy("RLOO (online RL)"),
        "grpo": gettext_lazy("GRPO (online RL)"),
    },
    "policy.sampler": {
        "auto": gettext_lazy("vLLM where it can run, else transformers"),
        "transformers": "transformers",
        "vllm": "vLLM",
    },
    "policy.pairs": {
        "all": gettext_lazy("every ordered pair"),
        "best_worst": gettext_lazy("best answer against worst"),
    },
    "data.rankings": {
        "weighted": gettext_lazy("every ranking, weighted by reliability"),
        "consensus": gettext_lazy("one consensus ranking per task"),
        "plain": gettext_lazy("every ranking alike"),
    },
    "execution.executor": {
        "local": gettext_lazy("in the worker's process (local)"),
        "torchrun": gettext_lazy("data-parallel processes (torchrun)"),
        "ray": gettext_lazy("Ray Train workers on a Ray cluster (ray)"),
    },
    "data.demonstrations": {
        "new": gettext_lazy("only new demonstrations"),
        "all": gettext_lazy("all demonstrations again"),
    },
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
    """A setting's help as a sentence in the page's language; one that starts by naming algorithms
    ("dpo: …") keeps their case. The help texts are the ML core's English (training.ml), extracted
    for translation by the `setting(default, "help")` keyword (labeling's makemessages)."""
    if not help_text:
        return ""
    help_text = gettext(help_text)
    if not help_text.startswith(("rloo", "grpo", "dpo", "iterative_dpo")):
        help_text = help_text[0].upper() + help_text[1:]
    if help_text.endswith((".", "。")):
        return help_text
    return help_text + ("。" if help_text[-1] >= "\u2e80" else ".")  # a full stop of the text's own script


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
        "help": _sentence(str(spec.help or FIELD_HELP.get(spec.name, ""))),
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
