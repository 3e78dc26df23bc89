"""API token authentication in one written-out query that also reads the user's roles."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from labeling import roles, sql


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's `Authorization: Token <key>` check. Every API request runs it, so it is one statement
    written out (labeling.sql): the token, its user and the user's group names (every labeling
    request checks a role, which would otherwise be a second query)."""

    _statement = None

    @classmethod
    def _columns(cls):
        if cls._statement is None:
            user_model = get_user_model()
            token, user = sql.Columns(Token, "tk"), sql.Columns(user_model, "u")
            membership = user_model.groups.through._meta.db_table
            cls._statement = (
                token,
                user,
                f"""
                SELECT {token.sql}, {user.sql}, g.name
                FROM {Token._meta.db_table} tk
                JOIN {user_model._meta.db_table} u ON u.id = tk.user_id
                LEFT JOIN {membership} ug ON ug.user_id = u.id
                LEFT JOIN {Group._meta.db_table} g ON g.id = ug.group_id
                WHERE tk.key = %(key)s
                """,
            )
        return cls._statement

    def authenticate_credentials(self, key):
        token_columns, user_columns, statement = self._columns()
        rows = sql.all_rows(statement, {"key": key})
        if not rows:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = token_columns.instance(rows[0])
        token.user = user = user_columns.instance(rows[0], len(token_columns))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        roles.groups_remember(user=user, names=[row[-1] for row in rows if row[-1]])
        return user, token
