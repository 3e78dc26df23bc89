"""One DRF permission per role, the same checks as the pages' (labeling.roles). A view whose
refusal says something of its own uses `IsResearcher.saying("Only researchers and admins can
export datasets.")`: the same check, that message in the 403 answer."""

from django.utils.translation import gettext_lazy
from rest_framework.permissions import BasePermission

from labeling import roles


class RolePermission(BasePermission):
    check = staticmethod(roles.has_role)
    message = gettext_lazy("Your account has no role in Yushan yet; ask an admin.")

    def has_permission(self, request, view) -> bool:
        return self.check(request.user)

    @classmethod
    def saying(cls, message: str) -> type["RolePermission"]:
        return type(cls.__name__, (cls,), {"message": message})


class IsAnnotator(RolePermission):
    check = staticmethod(roles.is_annotator)
    message = gettext_lazy("Only annotators can label tasks.")


class IsStaffAdmin(RolePermission):
    check = staticmethod(roles.is_admin)
    message = gettext_lazy("Only admins can do this.")


class IsResearcher(RolePermission):
    """Researchers and admins (training's datasets and model registry APIs)."""

    check = staticmethod(roles.is_researcher)
    message = gettext_lazy("Only researchers and admins can do this.")


class IsReviewer(RolePermission):
    """Reviewers and admins: they review demonstrations and adjudicate rankings."""

    check = staticmethod(roles.is_reviewer)
    message = gettext_lazy("Only reviewers and admins can review. Ask an admin for the reviewer role.")


class CanSeeProjects(RolePermission):
    """Anyone with a role."""

    check = staticmethod(roles.has_role)
    message = gettext_lazy("Your account has no role in Yushan yet; ask an admin.")
