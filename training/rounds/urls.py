"""Training rounds: the admin pages and the API."""

from django.urls import path

from training.rounds import api, views

urlpatterns = [
    path("projects/<int:pk>/rounds/", views.project_rounds, name="rounds"),
    path("rounds/<int:pk>/", views.round_detail, name="round"),
    path("rounds/<int:pk>/deploy/", views.round_deploy, name="round-deploy"),
    path("api/v1/rounds/", api.RoundListView.as_view(), name="api-rounds"),
    path("api/v1/rounds/<int:pk>/", api.RoundDetailView.as_view(), name="api-round"),
    path("api/v1/rounds/<int:pk>/cancel/", api.RoundCancelView.as_view(), name="api-round-cancel"),
    path("api/v1/rounds/<int:pk>/retry/", api.RoundRetryView.as_view(), name="api-round-retry"),
    path("api/v1/rounds/<int:pk>/decision/", api.RoundDecisionView.as_view(), name="api-round-decision"),
]
