"""Request body parsers for every API view (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

from django.utils.translation import gettext
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's, except that a body nested deeper than Python's parser can follow (about 1,000 levels,
    2 KB of brackets) is a 400 like any other malformed body, not a RecursionError and a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(gettext("JSON parse error - the body is nested too deeply.")) from None


PARSERS = [JSONParser, parsers.FormParser, parsers.MultiPartParser]
