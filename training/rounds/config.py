"""A round's settings: every stage's defaults, and one check, shared by the API and the round form,
that refuses unknown, mistyped and out-of-range settings with a message per field.

Each section is a config dataclass whose fields declare their types and ranges
(training.ml.options); the stages' own (SFT, reward, policy, evaluate) come from the ML core, the
snapshot filter and the deploy rule are declared here. The round's defaults lie over the
dataclasses' own: sized so that one round on the demo project finishes on a 2-core CPU with
SmolLM2-135M in well under 15 minutes. On GPUs, raise them.
"""

from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext

from labeling.errors import LabelingError
from labeling.models import Project
from training.ml import options
from training.ml.evaluate import EvaluateConfig
from training.ml.options import setting, translatable
from training.ml.policy_config import PolicyConfig
from training.ml.reward import RewardConfig
from training.ml.sft import SFTStageConfig


@dataclass
class DataSettings:
    """The filter of the snapshots a round trains on."""

    exclude_flagged: bool = setting(False, "leave out rankings with a flagged answer")
    exclude_none_acceptable: bool = setting(True, "leave out rankings marked 'none acceptable'")
    exclude_held: bool = setting(
        True, "leave out the labels of annotators on hold (their gold accuracy fell below the project's threshold)"
    )
    min_agreement: float | None = setting(
        None, "keep annotators whose pairwise agreement is at least this (empty: everyone)", range=(0, 1)
    )
    rankings: str = setting(
        "weighted",
        "what the reward model and DPO read: every annotator's ranking with its pairs weighted by annotator "
        "reliability (weighted), one consensus ranking per task with weighted pairs (consensus), or every "
        "ranking alike (plain)",
        choices=("weighted", "consensus", "plain"),
    )
    demonstrations: str = setting(
        "new",
        "SFT on the demonstrations the deployed policy has not been trained on (new), or on all of them again",
        choices=("new", "all"),
    )


@dataclass
class DeploySettings:
    auto: bool = setting(True, "deploy by itself when the new policy clears the threshold")
    threshold: float = setting(
        0.55, "win rate over the deployed policy needed", range=(0, 1), meaning=translatable("a win rate")
    )


@dataclass
class ExecutionSettings:
    """Where the training stages (SFT, reward model, policy) run: training.rounds.executors."""

    executor: str = setting(
        "local",
        "run the training stages in the gpu worker's process (local), as data-parallel processes on the "
        "worker's host, one per GPU (torchrun), or as Ray Train workers on a Ray cluster (ray)",
        choices=("local", "torchrun", "ray"),
    )
    processes: int = setting(
        1,
        "data-parallel processes, one per GPU: on the worker's host under torchrun, across the Ray cluster under ray",
        range=(1, 256),
    )


SECTIONS = {
    "data": DataSettings,
    "sft": SFTStageConfig,
    "reward": RewardConfig,
    "policy": PolicyConfig,
    "evaluate": EvaluateConfig,
    "deploy": DeploySettings,
    "execution": ExecutionSettings,
}

ROUND_DEFAULTS = {
    "sft": {"epochs": 2, "learning_rate": 5e-5, "max_length": 512},
    "reward": {"epochs": 2, "learning_rate": 2e-5, "max_prompt_tokens": 512, "max_answer_tokens": 192},
    "policy": {
        # On-policy iterative DPO, one iteration: 4 answers of 48 tokens to every training prompt,
        # scored by the round's reward model, DPO on each prompt's best against its worst. In
        # benchmarks/closed_loop.py it met every target under `concise` (29.6 min; offline DPO
        # 38.5), and under `explain` its second round gained in one of two runs (offline DPO's in
        # none of four); in benchmarks/policy_stage.py (two iterations) it beat offline DPO under
        # `concise` (+0.19) and was no different under `reference` (-0.02, interval across 0).
        # Offline DPO (`algorithm: dpo`, which reads `pairs` and `steps`) stays a choice: no
        # sampling, and it learns from the human rankings themselves.
        "algorithm": "iterative_dpo",
        "iterations": 1,
        "pairs": "best_worst",
        "steps": 24,
        "learning_rate": 2e-5,
        "prompts_per_step": 4,
        "generations_per_prompt": 4,
        "max_completion_length": 48,
        "kl_budget": 10.0,
    },
    "evaluate": {"prompts": 64, "samples": 2, "max_new_tokens": 96, "temperature": 0.7, "seed": 0},
}


def section_defaults(name: str, *, project: Project) -> dict:
    if name == "deploy":
        return {"threshold": project.deploy_threshold}
    if name == "execution":  # the GPU hosts' default (settings.ROUND_EXECUTOR), not a project's
        return {"executor": settings.ROUND_EXECUTOR, "processes": settings.ROUND_PROCESSES}
    return ROUND_DEFAULTS.get(name, {})


def round_config_clean(raw, *, project: Project) -> dict:
    """Every section's settings with defaults filled in; what is refused raises a LabelingError
    whose `errors` name each setting ("config.sft.epochs": "must be a whole number from 1 to 100")."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise LabelingError(gettext("config must be an object."), field="config")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise LabelingError(
            gettext("config has no section %(unknown)s; it has %(sections)s.")
            % {"unknown": repr(unknown[0]), "sections": ", ".join(sorted(SECTIONS))},
            field="config",
        )
    return _sections_clean(
        lambda name, cls: options.settings_validate(
            cls, raw.get(name), where=f"config.{name}", defaults=section_defaults(name, project=project)
        )
    )


def round_config_from_form(post, *, project: Project) -> dict:
    """The round form's inputs ("sft.epochs", …): the same checks as the API, the same defaults."""
    return _sections_clean(
        lambda name, cls: options.settings_from_form(
            cls, post, where=name, defaults=section_defaults(name, project=project)
        )
    )


def _sections_clean(clean) -> dict:
    config, errors = {}, {}
    for name, cls in SECTIONS.items():
        try:
            config[name] = clean(name, cls)
        except options.SettingsError as error:
            errors.update(settings_errors(error))
    if not errors:
        errors = _execution_errors(config)
    if errors:
        raise LabelingError(settings_problems(errors), field="config", errors=errors)
    return config


def _execution_errors(config: dict) -> dict[str, str]:
    """What torchrun and ray need of the policy stage: each of its algorithms shares a step's batch
    (`prompts_per_step`: prompts to sample, or pairs for DPO) out equally among the processes."""
    execution, policy = config["execution"], config["policy"]
    if execution["executor"] == "local" or execution["processes"] == 1:
        return {}
    names = {"executor": execution["executor"], "processes": execution["processes"]}
    if policy["prompts_per_step"] % execution["processes"]:
        return {
            "config.policy.prompts_per_step": gettext(
                "must be a multiple of the %(executor)s processes (%(processes)s): each takes an equal share of a step"
            )
            % names
        }
    return {}


# --- the ML core's messages, in the request's language ----------------------------------------------


def settings_errors(error: options.SettingsError) -> dict[str, str]:
    """What a SettingsError refused, by setting, in the active language: the setting names (the
    keys, "config.sft.epochs") stay English as the API takes them."""
    return {key: setting_message(message) for key, message in error.messages.items()}


def setting_message(message: options.Message) -> str:
    """gettext of the ML core's English template (marked `translatable` there), with the parameters
    that are words (a whole number, a win rate) translated the same way; values stay as they are."""
    if not message.template:
        return ""  # gettext("") would be the catalogue's header
    params = {
        name: setting_message(value) if isinstance(value, options.Message) else value
        for name, value in message.params.items()
    }
    text = gettext(message.template)
    return text % params if params else text


def settings_problems(errors: dict[str, str]) -> str:
    """One sentence per refused setting: "config.sft.epochs must be a whole number from 1 to 100." """
    sentences = [
        gettext("%(setting)s %(problem)s.") % {"setting": key, "problem": text} for key, text in errors.items()
    ]
    # A space after an English full stop, none after a Chinese one.
    return "".join(sentence if sentence.endswith("。") else sentence + " " for sentence in sentences).strip()
