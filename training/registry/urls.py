"""The model registry: the Models page (versions, deploys, generation jobs) and the API."""

from django.urls import path

from training.registry import api, views

urlpatterns = [
    path("projects/<int:pk>/models/", views.model_versions, name="model-versions"),
    path("projects/<int:pk>/models/<int:version_id>/deploy/", views.version_deploy, name="model-version-deploy"),
    path("projects/<int:pk>/models/generate/", views.generation_start, name="generation-start"),
    path("projects/<int:pk>/models/jobs/<int:job_id>/cancel/", views.generation_cancel, name="generation-cancel"),
    path("api/v1/model-versions/", api.ModelVersionListView.as_view(), name="api-model-versions"),
    path(
        "api/v1/model-versions/<int:pk>/deploy/", api.ModelVersionDeployView.as_view(), name="api-model-version-deploy"
    ),
    path("api/v1/generation-jobs/", api.GenerationJobListView.as_view(), name="api-generation-jobs"),
]
