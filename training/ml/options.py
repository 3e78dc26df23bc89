"""A config dataclass as command-line options, and a dict of settings checked against it (no Django).

A field declares its limits in `dataclasses.field(metadata=...)`, or with `setting()`, which is the same:

    epochs: int = setting(2, "passes over the data", range=(1, 100))
    learning_rate: float = setting(2e-5, range=(0, 1), min_exclusive=True, aliases=("--lr",))
    algorithm: str = setting("rloo", choices=("rloo", "grpo", "dpo"))

Metadata keys, all optional: `range` (low, high), both inclusive unless `min_exclusive` or
`max_exclusive` is true, either bound None for none; `choices`; `pattern` (a regular expression the
whole string must match); `help`; `aliases` (more option strings, e.g. ("--lr",)); `meaning` (what
the number is, for messages: "must be a win rate from 0 to 1"). Field types:
bool, int, float, str, or one of them `| None` (None is then accepted).

Command line:

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    options.add_arguments(parser, SFTStageConfig)            # --epochs, --learning-rate/--lr, --lora/--no-lora…
    config = options.from_arguments(SFTStageConfig, parser.parse_args(), parser=parser)
    options.to_arguments(config)   # ["--epochs=2", "--learning-rate=2e-05", ..., "--no-lora", ...]

Round config (the Django side): one call per section; the round's own defaults lie over the dataclass's.

    try:
        sft = options.settings_validate(SFTStageConfig, raw.get("sft"), where="config.sft",
                                        defaults=ROUND_DEFAULTS["sft"])
    except options.SettingsError as error:      # error.errors == {"config.sft.epochs": "must be a whole number from 1 to 100"}
        raise LabelingError(str(error), field="config") from None

`raw` None gives the defaults; unknown keys, mistyped values (a bool for a number, 2.5 for a whole
number, "1" for a number), NaN and infinities, values out of range and the dataclass's own
`__post_init__` checks are refused, all of a section's problems in one SettingsError. The result
is a plain dict of every field (JSON-ready: store it, and `SFTStageConfig(**result)` later).

The messages are English (`error.errors`, what the command-line tools print). The site shows them
translated without this module importing Django: each is also a Message (`error.messages`), an
English template marked with `translatable()` and its parameters, the words among them (a whole
number, a win rate) Messages too; `makemessages` extracts what `translatable()` marks (labeling's
override adds the keyword) and the Django side shows `gettext(template) % params`
(training.rounds.config.settings_errors).

The round form posts strings named "sft.epochs" etc.: `settings_from_form(SFTStageConfig,
request.POST, where="sft", defaults=...)` parses them (a checkbox is true when sent, as HTML sends
them) and goes through settings_validate, so the form and the API refuse the same things, with
error keys equal to the form's input names. `field_specs(cls)` describes each field (type, bounds,
choices, help) for rendering inputs. A section without an ML dataclass (the snapshot filter
`data`, `deploy`) gets a small dataclass of its own with the same metadata, for example
`threshold: float = setting(0.55, "win rate to deploy automatically", range=(0, 1))`.
"""

import argparse
import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Mapping

METADATA_KEYS = {"range", "min_exclusive", "max_exclusive", "choices", "pattern", "help", "aliases", "meaning"}
SEED_RANGE = (0, 2**32 - 1)  # what numpy's seed accepts


def translatable(text: str) -> str:
    """`text` unchanged: marks English that the site shows translated (a message template, or a word
    that goes into one, such as a field's `meaning`). `makemessages` extracts it by this name."""
    return text


@dataclasses.dataclass(frozen=True)
class Message:
    """What is wrong with a setting: an English template marked `translatable` and its parameters.
    str() gives the English; a parameter that is a word to translate is a Message itself."""

    template: str
    params: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        if not self.params:
            return self.template
        return self.template % {name: str(value) for name, value in self.params.items()}


_KINDS = {
    bool: translatable("true or false"),
    int: translatable("a whole number"),
    float: translatable("a float"),
    str: translatable("text"),
}


class SettingsError(ValueError):
    """Settings that were refused: `errors` maps "where.field" to what is wrong with it in English,
    `messages` to the same as a Message (to translate). A plain string is a Message without parameters."""

    def __init__(self, errors: Mapping[str, "Message | str"]):
        self.messages = {key: m if isinstance(m, Message) else Message(m) for key, m in errors.items()}
        self.errors = {key: str(message) for key, message in self.messages.items()}
        super().__init__("; ".join(f"{key} {message}" for key, message in self.errors.items()))


def setting(default, help: str | None = None, **metadata):
    """`dataclasses.field(default=default, metadata={"help": help or "", **metadata})`."""
    # None rather than "": makemessages reads the `def` line as a setting() call, and "" is no message.
    return dataclasses.field(default=default, metadata={"help": help or "", **metadata})


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: type  # bool, int, float or str
    nullable: bool  # None is a valid value
    default: object  # dataclasses.MISSING when the field has none
    low: float | None = None
    high: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple | None = None
    pattern: str | None = None
    help: str = ""
    aliases: tuple[str, ...] = ()
    meaning: str = ""  # what the number is, for messages: "a win rate" (default: its type in words)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def bounds(self) -> tuple[str | None, str | None]:
        """Each end of the range: None (no bound), "inclusive" or "exclusive"."""
        low = None if self.low is None else "exclusive" if self.min_exclusive else "inclusive"
        high = None if self.high is None else "exclusive" if self.max_exclusive else "inclusive"
        return low, high

    def limits(self) -> str:
        """The range in words: "from 1 to 100", "greater than 0 and at most 1", "at least 0"."""
        if self.bounds() == (None, None):
            return ""
        template = _RANGE_MESSAGES[self.bounds()].removeprefix("must be %(kind)s ")
        return template % {"low": _num(self.low), "high": _num(self.high)}


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# What a value out of range is told, by which ends the range has (FieldSpec.bounds): one template
# each, so that a translation can put the range where its language puts it.
_RANGE_MESSAGES = {
    ("inclusive", "inclusive"): translatable("must be %(kind)s from %(low)s to %(high)s"),
    ("inclusive", None): translatable("must be %(kind)s at least %(low)s"),
    ("exclusive", None): translatable("must be %(kind)s greater than %(low)s"),
    (None, "inclusive"): translatable("must be %(kind)s at most %(high)s"),
    (None, "exclusive"): translatable("must be %(kind)s less than %(high)s"),
    ("exclusive", "inclusive"): translatable("must be %(kind)s greater than %(low)s and at most %(high)s"),
    ("inclusive", "exclusive"): translatable("must be %(kind)s at least %(low)s and less than %(high)s"),
    ("exclusive", "exclusive"): translatable("must be %(kind)s greater than %(low)s and less than %(high)s"),
}


def _range_message(spec: FieldSpec) -> Message:
    params = {"kind": Message(spec.meaning or _KINDS[spec.kind]), "low": _num(spec.low), "high": _num(spec.high)}
    return Message(_RANGE_MESSAGES[spec.bounds()], params)


def _field_type(hint, owner: str) -> tuple[type, bool]:
    if hint in _KINDS:
        return hint, False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) == 1 and others[0] in _KINDS and len(typing.get_args(hint)) == 2:
            return others[0], True
    raise TypeError(f"{owner}: options handle bool, int, float and str (or one of them | None), not {hint}")


@functools.cache
def field_specs(config_cls) -> dict[str, FieldSpec]:
    """Each init field of the dataclass, with its type and its limits from metadata, in field order."""
    hints = typing.get_type_hints(config_cls)
    specs = {}
    for f in dataclasses.fields(config_cls):
        if not f.init:
            continue
        owner = f"{config_cls.__name__}.{f.name}"
        unknown = set(f.metadata) - METADATA_KEYS
        if unknown:
            raise TypeError(f"{owner}: unknown metadata {sorted(unknown)}; known: {sorted(METADATA_KEYS)}")
        kind, nullable = _field_type(hints[f.name], owner)
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        low, high = f.metadata.get("range", (None, None))
        specs[f.name] = FieldSpec(
            name=f.name,
            kind=kind,
            nullable=nullable,
            default=default,
            low=low,
            high=high,
            min_exclusive=bool(f.metadata.get("min_exclusive")),
            max_exclusive=bool(f.metadata.get("max_exclusive")),
            choices=tuple(f.metadata["choices"]) if "choices" in f.metadata else None,
            pattern=f.metadata.get("pattern"),
            help=f.metadata.get("help", ""),
            aliases=tuple(f.metadata.get("aliases", ())),
            meaning=f.metadata.get("meaning", ""),
        )
    return specs


# --- checking values ------------------------------------------------------------------------------


def check_value(spec: FieldSpec, value) -> tuple[object, Message | None]:
    """(the cleaned value, None) or (the value, what is wrong with it)."""
    if value is None:
        return None, None if spec.nullable else Message(translatable("must be %(kind)s, not empty"), _kind(spec))
    accepted = (int, float) if spec.kind is float else spec.kind
    if not isinstance(value, accepted) or (spec.kind is not bool and isinstance(value, bool)):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return value, Message(translatable("must be %(kind)s, not %(value)s"), {**_kind(spec), "value": shown})
    if spec.kind is bool:
        return value, None
    if spec.kind is str:
        return value, _text_error(spec, value)
    if spec.kind is float:
        try:
            value = float(value)
        except OverflowError:
            return value, _NOT_FINITE
        if not math.isfinite(value):
            return value, _NOT_FINITE
    return value, _range_error(spec, value)


_NOT_FINITE = Message(translatable("must be a finite number"))


def _kind(spec: FieldSpec) -> dict[str, Message]:
    """The parameter "kind": the field's type in words ("a whole number")."""
    return {"kind": Message(_KINDS[spec.kind])}


def _range_error(spec: FieldSpec, value) -> Message | None:
    too_low = spec.low is not None and (value <= spec.low if spec.min_exclusive else value < spec.low)
    too_high = spec.high is not None and (value >= spec.high if spec.max_exclusive else value > spec.high)
    return _range_message(spec) if too_low or too_high else None


def _text_error(spec: FieldSpec, value: str) -> Message | None:
    if spec.choices is not None and value not in spec.choices:
        return Message(translatable("must be %(choices)s"), {"choices": _either(spec.choices)})
    if spec.pattern is not None and re.fullmatch(spec.pattern, value) is None:
        return Message(translatable("must match %(pattern)s"), {"pattern": spec.pattern})
    return None


def _either(choices) -> str | Message:
    """("rloo", "grpo", "dpo") → "rloo, grpo or dpo" (the choices themselves are not translated)."""
    words = [str(choice) for choice in choices]
    if len(words) == 1:
        return words[0]
    return Message(translatable("%(choices)s or %(last)s"), {"choices": ", ".join(words[:-1]), "last": words[-1]})


def _unknown(where: str, name, specs) -> Message:
    return Message(
        translatable("is unknown: %(section)s has no setting %(name)s; it has %(settings)s"),
        {
            "section": where or Message(translatable("the config")),
            "name": repr(str(name)),
            "settings": ", ".join(specs),
        },
    )


def _key(where: str, name) -> str:
    return f"{where}.{name}" if where else str(name)


def _start_values(config_cls, specs: dict[str, FieldSpec], defaults: Mapping | None, where: str) -> dict:
    values = {name: spec.default for name, spec in specs.items()}
    for name, value in (defaults or {}).items():
        if name not in specs:
            raise TypeError(f"defaults for {where or config_cls.__name__}: {name!r} is not a field")
        values[name], error = check_value(specs[name], value)
        if error:
            raise TypeError(f"default {_key(where, name)} {error}")
    return values


def settings_validate(config_cls, raw, *, where: str, defaults: Mapping | None = None) -> dict:
    """Every field of config_cls: its default (dataclass default, then `defaults`) or the value in
    `raw`, type- and range-checked. Raises SettingsError keyed "where.field" for what is refused."""
    specs = field_specs(config_cls)
    values = _start_values(config_cls, specs, defaults, where)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SettingsError({where or config_cls.__name__: Message(translatable("must be an object"))})
    errors = {}
    for name, value in raw.items():
        if name not in specs:
            errors[_key(where, name)] = _unknown(where, name, specs)
            continue
        values[name], error = check_value(specs[name], value)
        if error:
            errors[_key(where, name)] = error
    for name, value in values.items():
        if value is dataclasses.MISSING and _key(where, name) not in errors:
            errors[_key(where, name)] = Message(translatable("is required"))
    if errors:
        raise SettingsError(errors)
    try:
        config_cls(**values)  # the dataclass's own checks (__post_init__), e.g. across fields
    except ValueError as error:
        raise SettingsError({where or config_cls.__name__: str(error)}) from None
    return values


# --- forms ------------------------------------------------------------------------------------------

_FALSE, _TRUE = {"", "0", "false", "off", "no"}, {"1", "true", "on", "yes"}


def parse_text(spec: FieldSpec, text: str) -> tuple[object, Message | None]:
    """A form's string as the field's type: (value, None) or (text, what is wrong)."""
    text = text.strip()
    if spec.kind is bool:
        lowered = text.lower()
        return (lowered in _TRUE, None) if lowered in _TRUE | _FALSE else (text, _must_be(spec))
    if text == "" and spec.nullable:
        return None, None
    if spec.kind is str:
        return text, None
    try:
        number = float(text)
    except ValueError:
        return text, _must_be(spec)
    if spec.kind is float:
        return number, None
    try:
        return int(text), None
    except ValueError:
        if math.isfinite(number) and number.is_integer():
            return int(number), None
        return text, _must_be(spec)


def settings_from_form(
    config_cls, data: Mapping[str, str], *, where: str, defaults: Mapping | None = None, prefix: str | None = None
) -> dict:
    """settings_validate for HTML form strings named prefix + field (prefix: "where." by default).

    An empty input keeps the default (None where the field allows it); a checkbox (bool field) is
    true when the form sent it and false when it did not, as browsers send checkboxes."""
    prefix = f"{where}." if prefix is None else prefix
    specs = field_specs(config_cls)
    raw, errors = {}, {}
    for name, spec in specs.items():
        text = data.get(prefix + name)
        if spec.kind is not bool and (text is None or (text.strip() == "" and not spec.nullable)):
            continue
        raw[name], error = parse_text(spec, text or "")
        if error:
            errors[_key(where, name)] = error
            del raw[name]
    for key in data:
        if key.startswith(prefix) and key[len(prefix) :] not in specs:
            errors[_key(where, key[len(prefix) :])] = _unknown(where, key[len(prefix) :], specs)
    try:
        cleaned = settings_validate(config_cls, raw, where=where, defaults=defaults)
    except SettingsError as error:
        for key, message in error.messages.items():
            errors.setdefault(key, message)
    if errors:
        raise SettingsError(errors)
    return cleaned


def _must_be(spec: FieldSpec) -> Message:
    return Message(translatable("must be %(kind)s"), _kind(spec))


# --- command line ------------------------------------------------------------------------------------


def _argument_type(spec: FieldSpec):
    if not spec.nullable:
        return spec.kind

    def convert(text: str):
        return None if text.strip().lower() in ("", "none") else spec.kind(text)

    convert.__name__ = spec.kind.__name__  # what argparse names in "invalid float value"
    return convert


def _help(spec: FieldSpec) -> str:
    parts = [part.replace("%", "%%") for part in (spec.help, spec.limits()) if part]
    if spec.kind is bool and spec.default is not dataclasses.MISSING:
        parts.append("default: " + (spec.option if spec.default else "--no-" + spec.option[2:]))
    elif spec.default is not dataclasses.MISSING:
        parts.append("default: %(default)s")
    return "; ".join(parts)


def add_arguments(parser: argparse.ArgumentParser, config_cls, *, skip=()) -> argparse.ArgumentParser:
    """One option per field not in `skip`: `--field-name` (and its aliases), typed, with the field's
    default; a bool field is `--flag/--no-flag`; choices are argparse choices."""
    specs = field_specs(config_cls)
    unknown = set(skip) - set(specs)
    if unknown:
        raise ValueError(f"{config_cls.__name__} has no fields {sorted(unknown)}")
    for spec in specs.values():
        if spec.name in skip:
            continue
        options = {"dest": spec.name, "help": _help(spec)}
        if spec.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = spec.default
        if spec.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = _argument_type(spec)
            if spec.choices is not None:
                options["choices"] = spec.choices
        parser.add_argument(spec.option, *spec.aliases, **options)
    return parser


def from_arguments(config_cls, namespace: argparse.Namespace, *, parser: argparse.ArgumentParser | None = None):
    """config_cls from the parsed options (fields the namespace lacks keep their defaults), checked
    like settings_validate. With a parser, what is refused ends the program through parser.error,
    named by option ("argument --epochs: must be between 1 and 100"); else SettingsError."""
    specs = field_specs(config_cls)
    values = {name: getattr(namespace, name) for name in specs if hasattr(namespace, name)}
    try:
        return config_cls(**settings_validate(config_cls, values, where=""))
    except SettingsError as error:
        if parser is None:
            raise
        named = [f"argument {specs[key].option}: {msg}" if key in specs else msg for key, msg in error.errors.items()]
        parser.error("; ".join(named))


def to_arguments(config, *, skip=()) -> list[str]:
    """The command line that gives `config` back through add_arguments and from_arguments
    (e.g. to run a stage's CLI in a subprocess); None is written "none"."""
    argv = []
    for name, spec in field_specs(type(config)).items():
        if name in skip:
            continue
        value = getattr(config, name)
        if spec.kind is bool:
            argv.append(spec.option if value else "--no-" + spec.option[2:])
        else:
            shown = "none" if value is None else repr(value) if spec.kind is float else str(value)
            argv.append(f"{spec.option}={shown}")  # "=": a value that starts with "-" is not an option
    return argv
