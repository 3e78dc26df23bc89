"""training.ml.options: config dataclasses as checked settings (API and form) and as command-line
options. Pure Python, no Django, no models."""

import argparse
import dataclasses
import json
import math

import pytest

from training.ml import options, policy, reward, sft
from training.ml.evaluate import EvaluateConfig
from training.ml.generation import SamplingParams
from training.ml.options import SettingsError, setting
from training.ml.policy_config import PolicyConfig
from training.ml.reward import RewardConfig
from training.ml.sft import SFTStageConfig

STAGE_CONFIGS = [SFTStageConfig, RewardConfig, PolicyConfig, EvaluateConfig, SamplingParams]


@dataclasses.dataclass
class Example:
    count: int = setting(3, "how many", range=(1, 10))
    share: float = setting(0.5, range=(0, 1), min_exclusive=True)
    name: str = setting("abc", pattern=r"[a-z]+")
    colour: str = setting("red", choices=("red", "green"))
    agreement: float | None = setting(None, range=(0, 1))
    label: str | None = None
    enabled: bool = True

    def __post_init__(self):
        if self.colour == "green" and self.count > 5:
            raise ValueError("green allows at most 5")


def refused(config_cls, raw, **kwargs) -> dict:
    with pytest.raises(SettingsError) as caught:
        options.settings_validate(config_cls, raw, where=kwargs.pop("where", "x"), **kwargs)
    return caught.value.errors


# --- the stage configs ---------------------------------------------------------------------------


@pytest.mark.parametrize("config_cls", STAGE_CONFIGS, ids=lambda c: c.__name__)
def test_every_numeric_field_of_every_stage_config_has_a_range_and_the_defaults_pass(config_cls):
    for spec in options.field_specs(config_cls).values():
        if spec.kind in (int, float):
            assert spec.low is not None and spec.high is not None, spec.name
    assert options.settings_validate(config_cls, None, where="x") == dataclasses.asdict(config_cls())


@pytest.mark.parametrize(
    "config_cls, name, bad, good",
    [
        (SFTStageConfig, "epochs", [0, 101], [1, 100]),
        (SFTStageConfig, "learning_rate", [0, -1e-5, 1.5], [1e-9, 1]),
        (SFTStageConfig, "per_device_batch_size", [0, 4097], [1, 4096]),
        (SFTStageConfig, "max_length", [0, 32769], [32768]),
        (SFTStageConfig, "lora_rank", [0, 1025], [1024]),
        (SFTStageConfig, "eval_fraction", [-0.1, 1], [0, 0.99]),
        (RewardConfig, "rankings_per_step", [0, 4097], [1]),
        (RewardConfig, "warmup_ratio", [-0.01, 1.01], [0, 1]),
        (PolicyConfig, "kl_beta", [-0.1, 100.5], [0, 100]),
        (PolicyConfig, "temperature", [0, 10.5], [0.1, 10]),
        (PolicyConfig, "generations_per_prompt", [1, 1025], [2]),
        (PolicyConfig, "seed", [-1, 2**32], [0, 2**32 - 1]),
        (EvaluateConfig, "temperature", [-0.1, 11], [0, 0.7]),
    ],
)
def test_ranges_are_refused_with_the_field_name(config_cls, name, bad, good):
    for value in bad:
        errors = refused(config_cls, {name: value}, where="stage")
        assert list(errors) == [f"stage.{name}"]
        assert errors[f"stage.{name}"].startswith("must be ")
    for value in good:
        assert options.settings_validate(config_cls, {name: value}, where="stage")[name] == value


def test_the_messages_say_the_range():
    assert refused(SFTStageConfig, {"epochs": 0}, where="sft") == {"sft.epochs": "must be a whole number from 1 to 100"}
    assert refused(SFTStageConfig, {"learning_rate": 0}, where="sft") == {
        "sft.learning_rate": "must be a float greater than 0 and at most 1"
    }
    assert refused(PolicyConfig, {"algorithm": "ppo"}, where="policy") == {
        "policy.algorithm": "must be rloo, grpo, dpo or iterative_dpo"
    }


def test_each_message_keeps_its_template_and_parameters_for_translation():
    """The site translates the English template and the words in it (training.rounds.config);
    str() of the message is the English the command line prints."""
    with pytest.raises(SettingsError) as caught:
        options.settings_validate(SFTStageConfig, {"epochs": 0, "lora": 1}, where="sft")
    epochs = caught.value.messages["sft.epochs"]
    assert epochs == options.Message(
        "must be %(kind)s from %(low)s to %(high)s",
        {"kind": options.Message("a whole number"), "low": "1", "high": "100"},
    )
    assert {key: str(message) for key, message in caught.value.messages.items()} == caught.value.errors
    assert caught.value.messages["sft.lora"].params["value"] == "1"
    assert SettingsError({"e": "green allows at most 5"}).messages["e"] == options.Message("green allows at most 5")
    assert options.translatable("a win rate") == "a win rate"


# --- types ---------------------------------------------------------------------------------------


def test_unknown_keys_are_refused_and_every_problem_is_reported_at_once():
    errors = refused(SFTStageConfig, {"epoch": 2, "epochs": 0, "lora": "yes"}, where="config.sft")
    assert set(errors) == {"config.sft.epoch", "config.sft.epochs", "config.sft.lora"}
    assert "has no setting 'epoch'" in errors["config.sft.epoch"] and "epochs" in errors["config.sft.epoch"]
    assert "config.sft.epoch is unknown: config.sft has no setting 'epoch'" in str(SettingsError(errors))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, json.loads("1e999"), 10**400])
def test_non_finite_floats_are_refused(value):
    assert refused(SFTStageConfig, {"learning_rate": value}, where="sft") == {
        "sft.learning_rate": "must be a finite number"
    }


def test_ints_stay_ints_and_ints_are_accepted_for_floats():
    cleaned = options.settings_validate(PolicyConfig, {"steps": 3, "kl_beta": 1, "temperature": 2}, where="p")
    assert cleaned["steps"] == 3 and type(cleaned["steps"]) is int
    assert cleaned["kl_beta"] == 1.0 and type(cleaned["kl_beta"]) is float
    assert type(cleaned["temperature"]) is float


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("epochs", 2.0, "must be a whole number, not 2.0"),
        ("epochs", "2", "must be a whole number, not '2'"),
        ("epochs", True, "must be a whole number, not True"),
        ("learning_rate", "1e-5", "must be a float, not '1e-5'"),
        ("learning_rate", False, "must be a float, not False"),
        ("lora", 1, "must be true or false, not 1"),
        ("lora", "true", "must be true or false, not 'true'"),
        ("epochs", None, "must be a whole number, not empty"),
        ("epochs", [2], "must be a whole number, not [2]"),
    ],
)
def test_values_that_coerce_badly_are_refused(name, value, message):
    assert refused(SFTStageConfig, {name: value}, where="sft") == {f"sft.{name}": message}


def test_bools_must_be_real_bools():
    assert options.settings_validate(SFTStageConfig, {"lora": True}, where="sft")["lora"] is True
    assert options.settings_validate(RewardConfig, {"packed": False}, where="reward")["packed"] is False


def test_none_only_where_the_type_allows_it():
    cleaned = options.settings_validate(Example, {"agreement": None, "label": None}, where="e")
    assert cleaned["agreement"] is None and cleaned["label"] is None
    assert options.settings_validate(Example, {"agreement": 1}, where="e")["agreement"] == 1.0
    assert refused(Example, {"agreement": 2}) == {"x.agreement": "must be a float from 0 to 1"}
    assert refused(Example, {"name": None}) == {"x.name": "must be text, not empty"}


def test_choices_and_patterns():
    assert refused(Example, {"colour": "blue"}) == {"x.colour": "must be red or green"}
    assert refused(Example, {"name": "abc1"}) == {"x.name": "must match [a-z]+"}
    assert options.settings_validate(Example, {"name": "xyz", "colour": "green"}, where="e")["name"] == "xyz"


def test_the_dataclass_own_checks_run_last():
    assert refused(Example, {"colour": "green", "count": 7}, where="e") == {"e": "green allows at most 5"}


def test_defaults_lie_over_the_dataclass_defaults():
    defaults = {"epochs": 2, "learning_rate": 5e-5, "max_length": 512}
    cleaned = options.settings_validate(SFTStageConfig, {"epochs": 3}, where="sft", defaults=defaults)
    assert cleaned == {**dataclasses.asdict(SFTStageConfig()), "epochs": 3, "learning_rate": 5e-5, "max_length": 512}
    assert options.settings_validate(SFTStageConfig, None, where="sft", defaults=defaults)["max_length"] == 512
    assert SFTStageConfig(**cleaned).epochs == 3
    with pytest.raises(TypeError):
        options.settings_validate(SFTStageConfig, None, where="sft", defaults={"epoch": 2})


def test_a_section_must_be_an_object():
    assert refused(SFTStageConfig, [1, 2], where="config.sft") == {"config.sft": "must be an object"}


def test_unsupported_field_types_are_a_programming_error():
    @dataclasses.dataclass
    class Listy:
        values: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError):
        options.field_specs(Listy)


# --- forms -----------------------------------------------------------------------------------------


def test_form_strings_become_typed_values():
    post = {
        "policy.steps": "12",
        "policy.kl_beta": "0.1",
        "policy.algorithm": "grpo",
        "policy.lora": "on",
        "policy.max_length": "",  # empty: the default
        "csrfmiddlewaretoken": "x",  # not this section's: ignored
        "sft.epochs": "1",
    }
    cleaned = options.settings_from_form(PolicyConfig, post, where="policy", defaults={"steps": 8})
    assert cleaned["steps"] == 12 and type(cleaned["steps"]) is int
    assert cleaned["kl_beta"] == 0.1 and cleaned["algorithm"] == "grpo" and cleaned["lora"] is True
    assert cleaned["max_length"] == PolicyConfig().max_length
    unticked = options.settings_from_form(RewardConfig, {}, where="reward")
    assert unticked["packed"] is False  # browsers send no value for an unticked checkbox
    assert options.settings_from_form(SFTStageConfig, {"sft.epochs": "3.0"}, where="sft")["epochs"] == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("2.5", "must be a whole number"),
        ("abc", "must be a whole number"),
        ("nan", "must be a whole number"),
        ("1e999", "must be a whole number"),
        ("0", "must be a whole number from 1 to 100"),
    ],
)
def test_form_errors_are_keyed_by_the_input_name(text, message):
    with pytest.raises(SettingsError) as caught:
        options.settings_from_form(SFTStageConfig, {"sft.epochs": text}, where="sft")
    assert caught.value.errors == {"sft.epochs": message}


def test_form_and_api_refuse_the_same_way():
    for text, value in [("0", 0), ("nan", math.nan), ("1e999", math.inf), ("2", 2)]:
        with pytest.raises(SettingsError) as form:
            options.settings_from_form(SFTStageConfig, {"sft.learning_rate": text}, where="sft")
        assert form.value.errors == refused(SFTStageConfig, {"learning_rate": value}, where="sft")


def test_form_nullable_fields_and_unknown_inputs():
    assert options.settings_from_form(Example, {"e.agreement": " "}, where="e")["agreement"] is None
    assert options.settings_from_form(Example, {"e.agreement": "0.8"}, where="e")["agreement"] == 0.8
    with pytest.raises(SettingsError) as caught:
        options.settings_from_form(Example, {"e.nope": "1", "e.enabled": "maybe"}, where="e")
    assert set(caught.value.errors) == {"e.nope", "e.enabled"}


# --- command line ----------------------------------------------------------------------------------


def parser_for(config_cls, **kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    options.add_arguments(parser, config_cls, **kwargs)
    return parser


def test_no_options_give_the_dataclass_defaults():
    for config_cls in STAGE_CONFIGS:
        assert options.from_arguments(config_cls, parser_for(config_cls).parse_args([])) == config_cls()


@pytest.mark.parametrize(
    "config",
    [
        SFTStageConfig(epochs=3, learning_rate=1e-3, lora=True, lora_rank=4, eval_fraction=0.0),
        RewardConfig(packed=False, weight_decay=0.01, warmup_ratio=0.1, seed=7),
        PolicyConfig(algorithm="dpo", kl_beta=0.1, temperature=0.7, generations_per_prompt=8),
        EvaluateConfig(prompts=3, temperature=0.0),
        Example(agreement=0.25, label="-starts-with-a-dash", enabled=False),
        Example(),
    ],
)
def test_command_line_round_trip(config):
    argv = options.to_arguments(config)
    parsed = parser_for(type(config)).parse_args(argv)
    assert options.from_arguments(type(config), parsed) == config


def test_option_types_bools_and_choices():
    parser = parser_for(PolicyConfig)
    args = parser.parse_args(["--steps", "5", "--kl-beta", "1", "--lora", "--algorithm", "grpo"])
    assert args.steps == 5 and isinstance(args.kl_beta, float) and args.lora is True and args.algorithm == "grpo"
    assert parser.parse_args(["--no-lora"]).lora is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--algorithm", "ppo"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", "1.5"])
    assert "from 1 to 1000000" in parser.format_help()


def test_out_of_range_options_end_through_the_parser(capsys):
    parser = parser_for(SFTStageConfig)
    with pytest.raises(SettingsError) as caught:
        options.from_arguments(SFTStageConfig, parser.parse_args(["--epochs", "0"]))
    assert caught.value.errors == {"epochs": "must be a whole number from 1 to 100"}
    with pytest.raises(SystemExit):
        options.from_arguments(SFTStageConfig, parser.parse_args(["--lr", "nan"]), parser=parser)
    assert "argument --learning-rate: must be a finite number" in capsys.readouterr().err


def test_skip_leaves_fields_out():
    parser = parser_for(PolicyConfig, skip=("seed",))
    assert "--seed" not in parser.format_help()
    assert options.from_arguments(PolicyConfig, parser.parse_args([])).seed == PolicyConfig().seed
    with pytest.raises(ValueError):
        parser_for(PolicyConfig, skip=("nope",))


def test_the_stage_clis_keep_their_option_names():
    base = ["--data", "d.jsonl", "--model", "m", "--out", "o"]
    args = sft.argument_parser().parse_args(
        [*base, "--epochs", "3", "--lr", "1e-3", "--batch-size", "4", "--gradient-accumulation", "2"]
        + ["--max-length", "256", "--eval-fraction", "0.2", "--lora", "--lora-rank", "4", "--seed", "1"]
    )
    assert options.from_arguments(SFTStageConfig, args) == SFTStageConfig(
        epochs=3,
        learning_rate=1e-3,
        per_device_batch_size=4,
        gradient_accumulation=2,
        max_length=256,
        eval_fraction=0.2,
        lora=True,
        lora_rank=4,
        seed=1,
    )
    args = reward.argument_parser().parse_args(
        [*base, "--epochs", "2", "--lr", "1e-4", "--rankings-per-step", "8", "--eval-fraction", "0"]
        + ["--no-packed", "--lora"]
    )
    assert options.from_arguments(RewardConfig, args) == RewardConfig(
        epochs=2, learning_rate=1e-4, rankings_per_step=8, eval_fraction=0.0, packed=False, lora=True
    )
    args = policy.argument_parser().parse_args(
        [*base, "--reward", "rm", "--algorithm", "grpo", "--steps", "3", "--epochs", "2", "--lr", "1e-5"]
        + ["--prompts-per-step", "2", "--generations", "3", "--max-completion-length", "16", "--kl-beta", "0.2"]
        + ["--temperature", "0.9", "--lora", "--seed", "5"]
    )
    assert args.reward == "rm" and args.data == "d.jsonl"
    assert options.from_arguments(PolicyConfig, args) == PolicyConfig(
        algorithm="grpo",
        steps=3,
        epochs=2,
        learning_rate=1e-5,
        prompts_per_step=2,
        generations_per_prompt=3,
        max_completion_length=16,
        kl_beta=0.2,
        temperature=0.9,
        lora=True,
        seed=5,
    )
