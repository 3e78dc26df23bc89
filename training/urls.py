from django.urls import path

from training import views

urlpatterns = [
    path("projects/<int:pk>/models/", views.model_versions, name="model-versions"),
    path("projects/<int:pk>/models/<int:version_id>/deploy/", views.version_deploy, name="model-version-deploy"),
    path("projects/<int:pk>/models/generate/", views.generation_start, name="generation-start"),
    path("projects/<int:pk>/models/jobs/<int:job_id>/cancel/", views.generation_cancel, name="generation-cancel"),
    path("projects/<int:pk>/playground/", views.playground, name="playground"),
    path("projects/<int:pk>/arena/", views.arena, name="arena"),
    path("projects/<int:pk>/arena/leaderboard/", views.arena_leaderboard, name="arena-leaderboard"),
    path("projects/<int:pk>/arena/<int:battle_id>/", views.arena_battle, name="arena-battle"),
]
