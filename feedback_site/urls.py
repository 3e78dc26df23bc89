from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from training.snapshot_views import datasets

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/datasets/", include("training.snapshot_urls")),
    path("api/v1/rounds/", include("training.round_urls")),
    path("api/v1/", include("labeling.api.urls")),
    path("api/v1/", include("training.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("datasets/", datasets, name="datasets"),
    path("", include("training.urls")),
    path("", include("training.round_page_urls")),
    path("", include("labeling.urls")),
]
