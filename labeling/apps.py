from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = gettext_lazy("Labeling")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from labeling import language

        # A user's stored language follows them into each new session (labeling.language).
        user_logged_in.connect(language.session_language_restore, dispatch_uid="yushan-session-language")
