"""The OpenAPI schema says what the server does (checked by Schemathesis, tests/test_schemathesis.py).

drf-spectacular describes the success answer of each operation from its serializers. What it
cannot see is added here, after generation (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]):

- the errors every operation can answer, each with the one error body of labeling.api.errors
  (`detail`, `code`, `errors` by field);
- the bounds the server enforces on ids: a row id is 1 to 2^63 - 1 (labeling.validation.row_id),
  in the path, in `?project=` and in the body;
- text fields that must not be blank: DRF trims surrounding whitespace and refuses NUL
  characters, so such a field needs a character other than whitespace and has no NUL in it
  (AutoSchema, the DEFAULT_SCHEMA_CLASS).
"""

from drf_spectacular import openapi as spectacular_openapi
from rest_framework import serializers

from labeling.validation import BIGGEST_ID

ID_BOUNDS = {"minimum": 1, "maximum": BIGGEST_ID}
ID_NAMES = {"id", "task_id", "hold_id", "project", "model_version", "round", "task"}
NOT_BLANK = "^[^\\x00]*[^\\s\\x00][^\\x00]*$"
NO_NUL = "^[^\\x00]*$"

ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "What is wrong, for a person to read."},
        "code": {"type": "string", "description": "A stable, machine-readable reason."},
        "errors": {
            "type": "object",
            "description": "Field name to its messages, for the fields that are wrong.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
}
ERRORS = {
    "400": "The request is invalid: `errors` names each wrong field.",
    "401": "No valid token or session.",
    "403": "This account's role may not do this.",
    "404": "No such row, or none this account may see.",
    "405": "This method is not allowed here.",
    "409": "The request conflicts with the row's state (a lease that expired, a name already used…).",
    "413": "The request body is too large.",
    "415": "The content type is not JSON, form data or multipart.",
    "429": "Too many requests; retry after `Retry-After` seconds.",
}
WRITE_ONLY_ERRORS = {"413", "415"}


def _error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _bound_ids(parameter: dict) -> None:
    schema = parameter.get("schema", {})
    if parameter.get("name") in ID_NAMES and schema.get("type") == "integer":
        schema.update(ID_BOUNDS)


BLANK = {"type": "string", "maxLength": 0}


def _bound_properties(schema: dict) -> None:
    for name, field in (schema.get("properties") or {}).items():
        if field.get("type") == "integer" and name in ID_NAMES and not field.get("readOnly"):
            field.update(ID_BOUNDS)
        if BLANK in field.get("oneOf", []):
            # drf-spectacular's "text or blank" is a oneOf, which "" (matching both) would fail.
            field["anyOf"] = field.pop("oneOf")


class AutoSchema(spectacular_openapi.AutoSchema):
    """drf-spectacular's, with each text field's input rule: DRF trims it and refuses NUL
    characters, and unless the field allows blank it needs a character other than whitespace."""

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction == "request" and isinstance(field, serializers.CharField) and schema.get("type") == "string":
            if "enum" not in schema and "format" not in schema:
                schema.setdefault("pattern", NO_NUL if field.allow_blank else NOT_BLANK)
                if not field.allow_blank:
                    schema.setdefault("minLength", 1)
        return schema


def postprocess(result, generator, request, public):
    """POSTPROCESSING_HOOKS entry: errors, id bounds and not-blank text, as described above."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for name, schema in components.items():
        if name.endswith("Request"):
            _bound_properties(schema)
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                _bound_ids(parameter)
            writes = method in ("post", "put", "patch")
            for code, description in ERRORS.items():
                if code in WRITE_ONLY_ERRORS and not writes:
                    continue
                operation["responses"].setdefault(code, _error_response(description))
    return result
