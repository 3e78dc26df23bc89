"""Shapes of API input and output. Input checks that need the task (which ids exist) live in
labeling.validation and run inside the service, under the task's lock."""

from django.db import models
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from labeling import validation
from labeling.markdown import markdown_to_html
from labeling.models import Demonstration, Project, Ranking
from labeling.selectors import assignment_candidates


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF would otherwise store the number 12 as the text "12"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false, and nothing else. DRF also takes 0, 1, "yes" and "off", which no schema
    says; and it reads a missing field in a form as an unticked box (false), which once resumed
    a project whenever a request forgot `paused`."""

    default_empty_html = serializers.empty

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not true/false (Python's bool is an int), not digits in a string."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number: not true/false, not digits in a string."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """Model fields as the strict fields above."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.BooleanField: StrictBooleanField,
        models.IntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.FloatField: StrictFloatField,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
    }


class ProjectSerializer(StrictModelSerializer):
    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "guidelines",
            "k",
            "overlap",
            "lease_seconds",
            "paused",
            "held_out_share",
            "deploy_threshold",
            "gold_rate",
            "gold_threshold",
            "gold_min_answers",
            "leaderboard",
            "reviews_required",
            "review_accept_share",
            "adjudication_threshold",
            "adaptive_overlap",
        ]


class MessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()
    html = serializers.CharField(required=False, help_text="Sanitised markdown rendering (with ?render=html).")


class CandidateOutSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Opaque answer id; use it in ranking, ratings and flags.")
    label = serializers.CharField(help_text="A, B, C… in this annotator's order.")
    text = serializers.CharField()
    html = serializers.CharField(required=False)


class LeasedTaskSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["demonstration", "ranking"])
    project = serializers.IntegerField()
    messages = MessageSerializer(many=True)
    candidates = CandidateOutSerializer(many=True)
    lease_expires_at = serializers.DateTimeField()
    draft = serializers.CharField(allow_blank=True)


def leased_task_data(assignment, *, html: bool) -> dict:
    task = assignment.task
    messages = [dict(m) for m in task.prompt.messages]
    candidates = []
    if task.kind == "ranking":
        candidates = [{"id": c.public_id, "label": c.label, "text": c.text} for c in assignment_candidates(assignment)]
    if html:
        for item in messages + candidates:
            key = "content" if "content" in item else "text"
            item["html"] = markdown_to_html(item[key])
    return {
        "id": task.pk,
        "kind": task.kind,
        "project": task.project_id,
        "messages": messages,
        "candidates": candidates,
        "lease_expires_at": assignment.lease_expires_at,
        "draft": assignment.draft_text,
    }


EMPTY_ANSWER = gettext_lazy("The answer is empty. Write the ideal answer before submitting.")


class DemonstrationInSerializer(serializers.Serializer):
    # Not trimmed (the annotator's spacing is kept); blank or only spaces is refused.
    text = StrictCharField(trim_whitespace=False, error_messages={"blank": EMPTY_ANSWER})
    client_id = serializers.UUIDField()


class DemonstrationEditSerializer(DemonstrationInSerializer):
    client_id = None


class DraftInSerializer(serializers.Serializer):
    text = StrictCharField(trim_whitespace=False, allow_blank=True)


ANSWER_ID = {"type": "string", "minLength": 1, "maxLength": 64}


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """A JSON object (settings, filters): what is inside is checked by the service that reads it."""

    default_error_messages = {"not_object": gettext_lazy("Must be a JSON object.")}

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_object")
        return super().to_internal_value(data)


@extend_schema_field({"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": ANSWER_ID}})
class RankingField(serializers.JSONField):
    """Groups of answer ids (labeling.validation checks them against the task's answers)."""


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "integer", "minimum": validation.RATING_MIN, "maximum": validation.RATING_MAX},
    }
)
class RatingsField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string", "enum": sorted(validation.FLAGS)}},
    }
)
class FlagsField(serializers.JSONField):
    pass


class RankingInSerializer(serializers.Serializer):
    ranking = RankingField(help_text='Groups best to worst, e.g. [["id3"], ["id1", "id4"], ["id2"]].')
    ratings = RatingsField(required=False, help_text='{"id1": 6}: a number 1-7 per answer.')
    flags = FlagsField(
        required=False,
        help_text='{"id2": ["harmful"]}; flags: fails_instruction, factually_wrong, harmful, inappropriate.',
    )
    none_acceptable = StrictBooleanField(required=False, default=False)
    client_id = serializers.UUIDField()


class RankingEditSerializer(RankingInSerializer):
    client_id = None


class SkipInSerializer(serializers.Serializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=500)


class UnskipOutSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    project = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["demonstration", "ranking"])
    lease_expires_at = serializers.DateTimeField()
    detail = serializers.CharField()


class DemonstrationOutSerializer(serializers.ModelSerializer):
    kind = serializers.SerializerMethodField()

    class Meta:
        model = Demonstration
        fields = ["id", "kind", "task", "text", "client_id", "created_at", "updated_at"]

    def get_kind(self, obj) -> str:
        return "demonstration"


class RankingOutSerializer(serializers.ModelSerializer):
    kind = serializers.SerializerMethodField()
    ranking = serializers.JSONField(source="groups")

    class Meta:
        model = Ranking
        fields = [
            "id",
            "kind",
            "task",
            "ranking",
            "ratings",
            "flags",
            "none_acceptable",
            "client_id",
            "created_at",
            "updated_at",
        ]

    def get_kind(self, obj) -> str:
        return "ranking"


# A submission's answer, built directly: the ModelSerializers above describe it in the schema, but
# building one per request costs more than the rest of the view (tests/test_api.py checks that the
# two agree).
def _submission_data(record, kind: str, **fields) -> dict:
    return {
        "id": record.pk,
        "kind": kind,
        "task": record.task_id,
        **fields,
        "client_id": str(record.client_id),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def demonstration_data(record) -> dict:
    return _submission_data(record, "demonstration", text=record.text)


def ranking_data(record) -> dict:
    return _submission_data(
        record,
        "ranking",
        ranking=record.groups,
        ratings=record.ratings,
        flags=record.flags,
        none_acceptable=record.none_acceptable,
    )


class MarkdownInSerializer(serializers.Serializer):
    text = StrictCharField(trim_whitespace=False, allow_blank=True, max_length=200_000)


class PauseInSerializer(serializers.Serializer):
    paused = StrictBooleanField()
