"""Pages. Each view checks the role, calls a selector, renders a template; the annotator's
actions themselves go through the JSON API from the page's script."""

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from labeling import ratelimit, selectors


class RateLimitedLoginView(LoginView):
    template_name = "labeling/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if ratelimit.login_blocked(request, username):
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, "Too many failed attempts. Wait a few minutes, then try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        ratelimit.login_failure_record(self.request, self.request.POST.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form):
        ratelimit.login_failures_clear(self.request, form.get_user().get_username())
        return super().form_valid(form)


@require_POST
def logout_view(request):
    logout(request)
    messages.info(request, "You are logged out.")
    return redirect("login")


@login_required
def home(request):
    return render(request, "labeling/home.html", {"projects": selectors.projects_for_annotator(request.user)})
