"""Dataset snapshots: the researchers' page and the API."""

from django.urls import path

from training.datasets import api, views

urlpatterns = [
    path("datasets/", views.datasets, name="datasets"),
    path("api/v1/datasets/", api.SnapshotListView.as_view(), name="api-datasets"),
    path("api/v1/datasets/<int:pk>/", api.SnapshotDetailView.as_view(), name="api-dataset"),
    path("api/v1/datasets/<int:pk>/download/", api.SnapshotDownloadView.as_view(), name="api-dataset-download"),
    path("api/v1/datasets/<int:pk>/files/<str:name>", api.SnapshotFileView.as_view(), name="api-dataset-file"),
]
