from django.urls import path

from training import api_views

urlpatterns = [
    path("model-versions/", api_views.ModelVersionListView.as_view(), name="api-model-versions"),
    path(
        "model-versions/<int:pk>/deploy/", api_views.ModelVersionDeployView.as_view(), name="api-model-version-deploy"
    ),
    path("generation-jobs/", api_views.GenerationJobListView.as_view(), name="api-generation-jobs"),
]
