"""Labeling's pages: the annotator's and the admin's (its API is labeling/api/urls.py)."""

from django.urls import path

from labeling import views

urlpatterns = [
    path("accounts/login/", views.LimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", views.logout_view, name="logout"),
    path("", views.home, name="home"),
    path("projects/<int:pk>/label/", views.annotate, name="annotate"),
    path("projects/<int:pk>/admin/", views.project_admin, name="project-admin"),
    path("projects/<int:pk>/admin/pause/", views.project_pause, name="project-pause"),
    path(
        "projects/<int:pk>/admin/holds/<int:hold_id>/release/", views.project_hold_release, name="project-hold-release"
    ),
    path("projects/<int:pk>/review/", views.review, name="review"),
    path("projects/<int:pk>/adjudicate/", views.adjudicate, name="adjudicate"),
    path("me/", views.progress, name="progress"),
]
