from django.urls import path

from training import round_views

urlpatterns = [
    path("projects/<int:pk>/rounds/", round_views.project_rounds, name="rounds"),
    path("rounds/<int:pk>/", round_views.round_detail, name="round"),
]
