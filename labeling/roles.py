"""The three roles. Admins are staff; annotators and researchers are Django groups."""

from django.contrib.auth.models import Group

ANNOTATOR = "annotator"
RESEARCHER = "researcher"


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
    return user.is_active and (_in_group(user, RESEARCHER) or is_admin(user))


def role_grant(*, user, role: str) -> None:
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    user.__dict__.pop("_yushan_groups", None)
