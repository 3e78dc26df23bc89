"""Query parameters every API reads, checked at the boundary: a bad one is a 400 naming it, never a
500 (`str.isdigit()` alone accepts "²" and "①", which `int()` refuses) nor a silent empty list."""

from labeling.errors import LabelingError

BIGGEST_ID_DIGITS = 18  # ids are 64-bit integers


def project_id_param(request, *, required: bool) -> int | None:
    """`?project=ID` as an int; None when absent and not required."""
    raw = request.query_params.get("project")
    if raw is None and not required:
        return None
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > BIGGEST_ID_DIGITS:
        raise LabelingError("Pass ?project=ID (a number).", field="project")
    return int(raw)
