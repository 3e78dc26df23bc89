from django.urls import path

from training import round_api

urlpatterns = [
    path("", round_api.RoundListView.as_view(), name="api-rounds"),
    path("<int:pk>/", round_api.RoundDetailView.as_view(), name="api-round"),
    path("<int:pk>/cancel/", round_api.RoundCancelView.as_view(), name="api-round-cancel"),
    path("<int:pk>/retry/", round_api.RoundRetryView.as_view(), name="api-round-retry"),
    path("<int:pk>/decision/", round_api.RoundDecisionView.as_view(), name="api-round-decision"),
]
