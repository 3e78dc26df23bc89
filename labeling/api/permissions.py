from rest_framework.permissions import BasePermission

from labeling import roles


class IsAnnotator(BasePermission):
    message = "Only annotators can label tasks."

    def has_permission(self, request, view) -> bool:
        return roles.is_annotator(request.user)


class IsStaffAdmin(BasePermission):
    message = "Only admins can do this."

    def has_permission(self, request, view) -> bool:
        return roles.is_admin(request.user)


class CanSeeProjects(BasePermission):
    message = "Your account has no role in Yushan yet; ask an admin."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return roles.is_annotator(user) or roles.is_researcher(user) or roles.is_admin(user)
