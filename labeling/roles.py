"""The roles. Admins are staff; annotators, reviewers and researchers are Django groups.

The checks (is_annotator, is_researcher, is_admin, has_role) and, for pages, one decorator per
role: log in first (anonymous users go to the login page), then the role, else the 403 page with
the message. Each decorator is used bare (`@admin_page`, its default message) or with the page's
own message (`@admin_page("Only admins can run training rounds.")`). The API's permissions are
the same checks (labeling.api.permissions).
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext_lazy

ANNOTATOR = "annotator"
RESEARCHER = "researcher"
REVIEWER = "reviewer"


def _in_group(user, name: str) -> bool:
    if not user.is_authenticated:
        return False
    cache = getattr(user, "_yushan_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._yushan_groups = cache
    return name in cache


def groups_remember(*, user, names) -> None:
    """Keep group names read together with the user (labeling.api.authentication): no second query."""
    user._yushan_groups = set(names)


def is_admin(user) -> bool:
    return user.is_authenticated and user.is_active and user.is_staff


def is_annotator(user) -> bool:
    return user.is_active and _in_group(user, ANNOTATOR)


def is_researcher(user) -> bool:
    """A researcher or an admin: admins may do whatever researchers do."""
    return user.is_active and (_in_group(user, RESEARCHER) or is_admin(user))


def is_reviewer(user) -> bool:
    """A reviewer or an admin: reviewers judge others' demonstrations and adjudicate rankings."""
    return user.is_active and (_in_group(user, REVIEWER) or is_admin(user))


def has_role(user) -> bool:
    """Any role: who may see the projects, the playground and the arena."""
    return is_annotator(user) or is_reviewer(user) or is_researcher(user) or is_admin(user)


def role_grant(*, user, role: str) -> None:
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    user.__dict__.pop("_yushan_groups", None)


# --- pages -------------------------------------------------------------------------------------


def page_requires(check, message: str):
    """A page for users that pass `check`: log in first, then the role, else the 403 page."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not check(request.user):
                raise PermissionDenied(message)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _role_page(check, default_message: str):
    def role_page(view_or_message=None):
        if callable(view_or_message):  # used bare: @admin_page
            return page_requires(check, default_message)(view_or_message)
        return page_requires(check, view_or_message or default_message)  # @admin_page("…")

    return role_page


annotator_page = _role_page(
    is_annotator, gettext_lazy("Only annotators can label. Ask an admin for the annotator role.")
)
admin_page = _role_page(is_admin, gettext_lazy("Only admins can open this page."))
reviewer_page = _role_page(
    is_reviewer, gettext_lazy("Only reviewers and admins can review. Ask an admin for the reviewer role.")
)
researcher_page = _role_page(is_researcher, gettext_lazy("Only researchers and admins can open this page."))
any_role_page = _role_page(has_role, gettext_lazy("Your account has no role in Yushan yet; ask an admin."))
