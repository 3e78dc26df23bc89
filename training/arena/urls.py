"""The playground and the arena pages."""

from django.urls import path

from training.arena import views

urlpatterns = [
    path("projects/<int:pk>/playground/", views.playground, name="playground"),
    path(
        "projects/<int:pk>/playground/turns/<int:turn_id>/",
        views.playground_turn_progress,
        name="playground-turn-progress",
    ),
    path("projects/<int:pk>/arena/", views.arena, name="arena"),
    path("projects/<int:pk>/arena/leaderboard/", views.arena_leaderboard, name="arena-leaderboard"),
    path("projects/<int:pk>/arena/<int:battle_id>/", views.arena_battle, name="arena-battle"),
    path(
        "projects/<int:pk>/arena/<int:battle_id>/progress/", views.arena_battle_progress, name="arena-battle-progress"
    ),
]
