"""Every concept's urls.py, included once. Each training package's holds its pages and its part of
/api/v1/; labeling keeps its API in labeling/api/urls.py."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
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
