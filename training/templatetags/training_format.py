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

register = template.Library()

# Readable names of the metrics the rounds store (training.ml.sft, reward, policy, evaluate).
METRIC_LABELS = {
    "accuracy_first": "preference accuracy, first step",
    "accuracy_last": "preference accuracy, last step",
    "algorithm": "algorithm",
    "best_epoch": "best epoch",
    "decided_by": "judge that decided",
    "disagreement_blocks_deploy": "judges' disagreement blocks deploying",
    "eval_accuracy": "held-out accuracy",
    "eval_loss": "held-out loss",
    "eval_pairs": "held-out pairs",
    "evaluation": "evaluation",
    "evaluation_split": "evaluation prompts",
    "held_out_conversations": "held-out conversations",
    "held_out_prompts": "on prompts it did not train on",
    "held_out_rankings": "held-out rankings",
    "implicit_reward_accuracy": "policy's own accuracy on held-out rankings",
    "judges_disagree": "judges disagree",
    "kl": "KL to the deployed policy (nats per answer)",
    "kl_checks": "KL checks",
    "kl_first": "KL to the SFT model, first step (nats per answer)",
    "kl_last": "KL to the SFT model, last step (nats per answer)",
    "loss_first": "loss, first step",
    "loss_last": "loss, last step",
    "mean_length_first": "mean answer length, first step (tokens)",
    "mean_length_last": "mean answer length, last step (tokens)",
    "new_mean_length": "new policy's mean answer length (tokens)",
    "new_mean_reward": "new policy's mean reward",
    "old_mean_length": "deployed policy's mean answer length (tokens)",
    "old_mean_reward": "deployed policy's mean reward",
    "parameters": "parameters",
    "prompts": "prompts evaluated",
    "reward_first": "mean reward, first step",
    "reward_last": "mean reward, last step",
    "reward_margin_first": "reward margin, first step",
    "reward_margin_last": "reward margin, last step",
    "reward_model_accuracy": "reward model's accuracy on held-out rankings",
    "seconds": "training time",
    "steps": "steps",
    "stopped_early": "stopped early",
    "train_conversations": "training conversations",
    "train_loss_first": "training loss, first step",
    "train_loss_last": "training loss, last step",
    "train_rankings": "training rankings",
    "win_rate": "win rate over the deployed policy",
}
JUDGE_NAMES = {
    "new_reward_model": "this round's reward model",
    "previous_reward_model": "the previous round's reward model",
}


@register.filter
def number(value) -> str:
    """A whole number as it is (with thousands separators), any other to 3 significant digits."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < 0.001:
        return f"{value:.2e}"
    if abs(value) >= 1000:
        return f"{round(value):,}"
    return f"{value:#.3g}".rstrip(".")


@register.filter
def duration(value) -> str:
    """Seconds (or a timedelta) in words: "40 s", "4 min 10 s", "2 h 5 min"."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    seconds = max(0, round(value))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


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
            return f"{len(value)} recorded"
        return " – ".join(number(item) for item in value)
    return number(value)
