"""Numbers on the admin's training pages: whole numbers without decimals, other numbers to three
significant digits, durations in words, and a model version's metrics (a JSON dict, possibly
nested) as labelled rows.

    {% load training_format %}
    {{ value|number }}            18 · 0.375 · 1,234 · 5.00e-05
    {{ seconds|duration }}        "4 min 10 s"
    {% for row in version.metrics|metric_rows %}…{% endfor %}
"""

import math
from datetime import timedelta

from django import template
from django.utils import formats
from django.utils.translation import gettext, gettext_lazy

register = template.Library()

# Readable names of the metrics the rounds store (training.ml.sft, reward, policy, evaluate).
METRIC_LABELS = {
    "accuracy_first": gettext_lazy("preference accuracy, first step"),
    "accuracy_last": gettext_lazy("preference accuracy, last step"),
    "algorithm": gettext_lazy("algorithm"),
    "best_epoch": gettext_lazy("best epoch"),
    "by_process": gettext_lazy("each process's own"),
    "decided_by": gettext_lazy("judge that decided"),
    "disagreement_blocks_deploy": gettext_lazy("judges' disagreement blocks deploying"),
    "eval_accuracy": gettext_lazy("held-out accuracy"),
    "eval_loss": gettext_lazy("held-out loss"),
    "eval_pairs": gettext_lazy("held-out pairs"),
    "evaluation": gettext_lazy("evaluation"),
    "evaluation_split": gettext_lazy("evaluation prompts"),
    "held_out_conversations": gettext_lazy("held-out conversations"),
    "held_out_prompts": gettext_lazy("on prompts it did not train on"),
    "held_out_rankings": gettext_lazy("held-out rankings"),
    "implicit_reward_accuracy": gettext_lazy("policy's own accuracy on held-out rankings"),
    "judges_disagree": gettext_lazy("judges disagree"),
    "kl": gettext_lazy("KL to the deployed policy (nats per answer)"),
    "kl_checks": gettext_lazy("KL checks"),
    "kl_first": gettext_lazy("KL to the SFT model, first step (nats per answer)"),
    "kl_last": gettext_lazy("KL to the SFT model, last step (nats per answer)"),
    "length_slope_last": gettext_lazy("reward per answer token removed, last step"),
    "loss_first": gettext_lazy("loss, first step"),
    "loss_last": gettext_lazy("loss, last step"),
    "mean": gettext_lazy("mean"),
    "mean_length_first": gettext_lazy("mean answer length, first step (tokens)"),
    "mean_length_last": gettext_lazy("mean answer length, last step (tokens)"),
    "new_mean_length": gettext_lazy("new policy's mean answer length (tokens)"),
    "new_mean_reward": gettext_lazy("new policy's mean reward"),
    "old_mean_length": gettext_lazy("deployed policy's mean answer length (tokens)"),
    "old_mean_reward": gettext_lazy("deployed policy's mean reward"),
    "parameters": gettext_lazy("parameters"),
    "prompts": gettext_lazy("prompts evaluated"),
    "reward_shaping": gettext_lazy("reward shaping (on the SFT model's own samples)"),
    "reward_first": gettext_lazy("mean reward, first step"),
    "reward_last": gettext_lazy("mean reward, last step"),
    "reward_margin_first": gettext_lazy("reward margin, first step"),
    "reward_margin_last": gettext_lazy("reward margin, last step"),
    "reward_model_accuracy": gettext_lazy("reward model's accuracy on held-out rankings"),
    "reused_old_answers": gettext_lazy("deployed policy's answers reused from its own round's evaluation"),
    "samples": gettext_lazy("samples"),
    "samples_per_prompt": gettext_lazy("answers per prompt and policy"),
    "seconds": gettext_lazy("training time"),
    "std": gettext_lazy("standard deviation"),
    "steps": gettext_lazy("steps"),
    "stopped_early": gettext_lazy("stopped early"),
    "train_conversations": gettext_lazy("training conversations"),
    "train_loss_first": gettext_lazy("training loss, first step"),
    "train_loss_last": gettext_lazy("training loss, last step"),
    "train_rankings": gettext_lazy("training rankings"),
    "win_rate": gettext_lazy("win rate over the deployed policy"),
}
JUDGE_NAMES = {
    "new_reward_model": gettext_lazy("this round's reward model"),
    "previous_reward_model": gettext_lazy("the previous round's reward model"),
}


@register.filter
def number(value) -> str:
    """A whole number as it is (with thousands separators), any other to 3 significant digits."""
    if isinstance(value, bool) or value is None:
        return {True: gettext("yes"), False: gettext("no"), None: "—"}[value]
    if isinstance(value, int):
        return formats.number_format(value, force_grouping=True)
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < 0.001:
        return f"{value:.2e}"
    if abs(value) >= 1000:
        return formats.number_format(round(value), force_grouping=True)
    return formats.number_format(f"{value:#.3g}".rstrip("."))


@register.filter
def duration(value) -> str:
    """Seconds (or a timedelta) in words: "40 s", "4 min 10 s", "2 h 5 min"."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    seconds = max(0, round(value))
    if seconds < 60:
        return gettext("%(s)s s") % {"s": seconds}
    if seconds < 3600:
        return gettext("%(min)s min %(s)s s") % {"min": seconds // 60, "s": seconds % 60}
    return gettext("%(h)s h %(min)s min") % {"h": seconds // 3600, "min": seconds % 3600 // 60}


@register.filter
def millions(value) -> str:
    """A parameter count in millions, to 3 significant digits: "135M"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{number(float(value) / 1e6)}M"


@register.filter
def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, str(key).replace("_", " "))


@register.filter
def metric_rows(metrics) -> list[dict]:
    """[{"label", "value"} or {"label", "rows": [...]}]: one row per metric; a nested dict becomes
    a group of rows, a list of numbers one row, a list of dicts (the KL checks) a count."""
    if not isinstance(metrics, dict):
        return []
    return [_metric_row(key, value) for key, value in metrics.items()]


def _metric_row(key: str, value) -> dict:
    label = metric_label(key)
    if isinstance(value, dict):
        return {"label": label, "rows": metric_rows(value)}
    return {"label": label, "value": _metric_value(key, value)}


def _metric_value(key: str, value) -> str:
    if key == "seconds":
        return duration(value)
    if key == "decided_by":
        return JUDGE_NAMES.get(value, str(value))
    if isinstance(value, list):
        if all(isinstance(item, dict) for item in value):
            return gettext("%(count)s recorded") % {"count": len(value)}
        return " – ".join(number(item) for item in value)
    return number(value)
