from django import template
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from labeling.markdown import markdown_to_html

register = template.Library()

# The speakers of a conversation, as the pages name them.
ROLE_NAMES = {"system": _("System"), "user": _("User"), "assistant": _("Assistant")}


@register.filter
def markdown(text: str) -> str:
    return mark_safe(markdown_to_html(text))  # noqa: S308 - sanitised by markdown_to_html


@register.filter
def role_name(role: str) -> str:
    """A conversation turn's role in the page's language ("user" → "User" / "使用者")."""
    return ROLE_NAMES.get(role, str(role).capitalize())
