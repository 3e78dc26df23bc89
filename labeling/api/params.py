"""Query parameters every API reads, checked at the boundary: a bad one is a 400 naming it, never a
500 (`str.isdigit()` alone accepts "²" and "①", which `int()` refuses) nor a silent empty list."""

from django.core.exceptions import ObjectDoesNotExist
from django.utils.translation import gettext
from rest_framework.exceptions import NotFound
from rest_framework.serializers import PrimaryKeyRelatedField

from labeling.errors import LabelingError
from labeling.validation import row_id


def project_id_param(request, *, required: bool) -> int | None:
    """`?project=ID` as an int; None when absent and not required."""
    raw = request.query_params.get("project")
    if raw is None and not required:
        return None
    project_id = None if raw is None else row_id(raw)
    if project_id is None:
        raise LabelingError(gettext("Pass ?project=ID (a number)."), field="project")
    return project_id


class RowField(PrimaryKeyRelatedField):
    """A related row by its id, in a request body: an integer (or its digits as text) within a
    64-bit id, else "not a valid id". DRF's own field passes any value to the database, where a
    float infinity or an id past 2^63 is an OverflowError (a 500) rather than a 400."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("incorrect_type", data_type=type(data).__name__)
        pk = row_id(data)
        if pk is None:
            self.fail("does_not_exist", pk_value=str(data)[:40])
        try:
            return self.get_queryset().get(pk=pk)
        except ObjectDoesNotExist:
            # A well-formed id of a row that is not there: 404, as in the path (the schema says so).
            name = self.field_name or "id"
            message = gettext("No %(name)s %(pk)s.") % {"name": name.replace("_", " "), "pk": pk}
            raise NotFound({"detail": message, "code": "not_found", "errors": {name: [message]}}) from None
