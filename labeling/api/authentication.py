"""API token authentication in one written-out query that also reads the user's roles."""

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from labeling import roles, sql


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's `Authorization: Token <key>` check. Every API request runs it, so it is one statement
    written out (labeling.sql.token_with_user): the token, its user and the user's group names
    (every labeling request checks a role, which would otherwise be a second query)."""

    def authenticate_credentials(self, key):
        token_columns, user_columns, statement = sql.token_with_user()
        rows = sql.all_rows(statement, {"key": key})
        if not rows:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = token_columns.instance(rows[0])
        token.user = user = user_columns.instance(rows[0], len(token_columns))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        roles.groups_remember(user=user, names=[row[-1] for row in rows if row[-1]])
        return user, token
