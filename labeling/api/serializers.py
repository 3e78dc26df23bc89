"""Shapes of API input and output. Input checks that need the task (which ids exist) live in
labeling.validation and run inside the service, under the task's lock."""

from rest_framework import serializers

from labeling.markdown import markdown_to_html
from labeling.models import Demonstration, Project, Ranking
from labeling.selectors import assignment_candidates


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF would otherwise store the number 12 as the text "12"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ProjectSerializer(serializers.ModelSerializer):
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


class DemonstrationInSerializer(serializers.Serializer):
    text = StrictCharField(trim_whitespace=False, allow_blank=True)
    client_id = serializers.UUIDField()


class DraftInSerializer(serializers.Serializer):
    text = StrictCharField(trim_whitespace=False, allow_blank=True)


class RankingInSerializer(serializers.Serializer):
    ranking = serializers.JSONField(help_text='Groups best to worst, e.g. [["id3"], ["id1", "id4"], ["id2"]].')
    ratings = serializers.JSONField(required=False, help_text='{"id1": 6}: a number 1-7 per answer.')
    flags = serializers.JSONField(
        required=False,
        help_text='{"id2": ["harmful"]}; flags: fails_instruction, factually_wrong, harmful, inappropriate.',
    )
    none_acceptable = serializers.BooleanField(required=False, default=False)
    client_id = serializers.UUIDField()


class RankingEditSerializer(RankingInSerializer):
    client_id = None


class SkipInSerializer(serializers.Serializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=500)


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


class RequiredBooleanField(serializers.BooleanField):
    """A boolean that must be sent: DRF reads a form without the field as an unticked checkbox
    (false), which would resume a project whenever a form forgot `paused`."""

    default_empty_html = serializers.empty


class PauseInSerializer(serializers.Serializer):
    paused = RequiredBooleanField()
