from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = gettext_lazy("Training")
    default_auto_field = "django.db.models.BigAutoField"
