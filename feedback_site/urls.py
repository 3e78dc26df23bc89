"""Every concept's urls.py, included once. Each holds its pages and its part of /api/v1/."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("training.datasets.urls")),
    path("", include("training.rounds.urls")),
    path("", include("training.registry.urls")),
    path("", include("training.arena.urls")),
    path("", include("labeling.urls")),
]
