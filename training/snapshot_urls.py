from django.urls import path

from training import snapshot_api

urlpatterns = [
    path("", snapshot_api.SnapshotListView.as_view(), name="api-datasets"),
    path("<int:pk>/", snapshot_api.SnapshotDetailView.as_view(), name="api-dataset"),
    path("<int:pk>/download/", snapshot_api.SnapshotDownloadView.as_view(), name="api-dataset-download"),
    path("<int:pk>/files/<str:name>", snapshot_api.SnapshotFileView.as_view(), name="api-dataset-file"),
]
