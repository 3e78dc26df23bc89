from django.urls import path

from labeling import views

urlpatterns = [
    path("accounts/login/", views.RateLimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", views.logout_view, name="logout"),
    path("", views.home, name="home"),
]
