"""Every concept's urls.py, included once. Each training package's holds its pages and its part of
/api/v1/; labeling keeps its API in labeling/api/urls.py."""

from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from labeling.views import language_set

urlpatterns = [
    path("admin/", admin.site.urls),
    # The language switch (Django's set_language, which also stores a signed-in user's choice) and
    # the JavaScript catalogue (gettext() and interpolate() for the pages' scripts, from locale/).
    path("i18n/setlang/", language_set, name="set_language"),
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["labeling", "training"]), name="javascript-catalog"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # The labeling API first, included here without a level between: next task and submit, the
    # requests annotators make all day, resolve without trying every other pattern before them.
    path("api/v1/", include("labeling.api.urls")),
    path("", include("labeling.urls")),
    path("", include("training.datasets.urls")),
    path("", include("training.rounds.urls")),
    path("", include("training.registry.urls")),
    path("", include("training.arena.urls")),
]

handler404 = "labeling.api.errors.not_found"
handler500 = "labeling.api.errors.server_error"
