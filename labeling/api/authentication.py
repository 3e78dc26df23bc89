"""API token authentication that reads the user's roles in the same query."""

from django.db.models import F
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from labeling import roles


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's `Authorization: Token <key>` check, loading the user's group names in the same query:
    every labeling request then checks a role, which was a second query on each request."""

    def authenticate_credentials(self, key):
        rows = list(
            self.get_model().objects.select_related("user").filter(key=key).annotate(group=F("user__groups__name"))
        )
        if not rows:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = rows[0]
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        roles.groups_remember(user=token.user, names=[row.group for row in rows if row.group])
        return token.user, token
