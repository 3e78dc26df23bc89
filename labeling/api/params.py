"""Query parameters every API reads, checked at the boundary: a bad one is a 400 naming it, never a
500 (`str.isdigit()` alone accepts "²" and "①", which `int()` refuses) nor a silent empty list."""

from labeling.errors import LabelingError
from labeling.validation import row_id


def project_id_param(request, *, required: bool) -> int | None:
    """`?project=ID` as an int; None when absent and not required."""
    raw = request.query_params.get("project")
    if raw is None and not required:
        return None
    project_id = None if raw is None else row_id(raw)
    if project_id is None:
        raise LabelingError("Pass ?project=ID (a number).", field="project")
    return project_id
