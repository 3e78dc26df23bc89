"""Pages. Each view checks the role, calls a selector, renders a template; the annotator's
actions themselves go through the JSON API from the page's script."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from labeling import language, login_limits, page_selectors, roles, selectors, services, validation
from labeling.models import Hold, Project
from labeling.quality import adjudication, gold
from labeling.quality import review as peer_review
from labeling.quality import selectors as quality_selectors


class LimitedLoginView(LoginView):
    """Django's login, within labeling.login_limits: an address over its rate gets a 429 here;
    a locked-out username is refused by the axes backend and answered by its lockout response."""

    template_name = "labeling/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        return login_limits.address_refusal(request) or super().post(request, *args, **kwargs)


@require_POST
def logout_view(request):
    logout(request)
    messages.info(request, gettext("You are logged out."))
    return redirect("login")


@require_POST
def language_set(request):
    """The switch in every page's header: Django's set_language (the cookie, then back to the page),
    and for a signed-in user the choice stored with them and in the session (labeling.language)."""
    response = set_language(request)
    chosen = language.language_supported(request.POST.get("language"))
    if chosen and request.user.is_authenticated:
        language.user_language_set(user=request.user, language=chosen)
        request.session[language.SESSION_KEY] = chosen
    return response


PROJECT_PAGE_REFUSED = gettext_lazy("Only admins can open project pages.")


@login_required
def home(request):
    return render(request, "labeling/home.html", {"rows": page_selectors.home_projects(user=request.user)})


RATING_CHOICES = list(range(validation.RATING_MIN, validation.RATING_MAX + 1))


def _flag_choices() -> list[dict]:
    """The flags as the ranking board takes them (static/labeling/annotate/board.js)."""
    return [{"name": name, "label": label} for name, label in validation.FLAGS.items()]


def _api_root() -> str:
    return reverse("api-projects").removesuffix("projects/")


@roles.annotator_page
@ensure_csrf_cookie  # the page's script sends the token back in X-CSRFToken
def annotate(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    context = {
        "project": project,
        "api_root": _api_root(),
        "max_chars": settings.DEMONSTRATION_MAX_CHARS,
        "flags": _flag_choices(),
        "ratings": RATING_CHOICES,
        "rating_scale": validation.RATING_SCALE,
        # Said at once, as the next-task API says it (403), so no one waits for a task.
        "on_hold": Hold.objects.filter(project=project, annotator=request.user, released_at__isnull=True).exists(),
    }
    return render(request, "labeling/annotate.html", context)


@roles.reviewer_page
@ensure_csrf_cookie  # the page's script sends the token back in X-CSRFToken
def review(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    context = {
        "project": project,
        "api_root": _api_root(),
        "max_chars": settings.DEMONSTRATION_MAX_CHARS,
        "reason_max": peer_review.REASON_MAX_CHARS,
        "summary": page_selectors.review_summary(project=project),
    }
    return render(request, "labeling/review.html", context)


@roles.reviewer_page
@ensure_csrf_cookie
def adjudicate(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    context = {
        "project": project,
        "note_max": adjudication.NOTE_MAX_CHARS,
        "queue": page_selectors.adjudication_page_data(project=project, adjudicator=request.user),
    }
    return render(request, "labeling/adjudicate.html", context)


@roles.annotator_page
@ensure_csrf_cookie
def progress(request):
    context = {
        "progress": selectors.annotator_progress(annotator=request.user),
        "agreement": quality_selectors.annotator_agreement(annotator=request.user),
        "gold": gold.annotator_gold(annotator=request.user),
        "leaderboards": gold.leaderboards(annotator=request.user),
        "submissions": page_selectors.progress_page_submissions(annotator=request.user),
        "skipped": page_selectors.progress_page_skipped(annotator=request.user),
        # The ranking board and the answer editor, as on the annotate page.
        "flags": _flag_choices(),
        "ratings": RATING_CHOICES,
        "rating_scale": validation.RATING_SCALE,
        "max_chars": settings.DEMONSTRATION_MAX_CHARS,
        "edit_minutes": settings.SUBMISSION_EDIT_WINDOW_SECONDS // 60,
    }
    return render(request, "labeling/progress.html", context)


@roles.admin_page(PROJECT_PAGE_REFUSED)
def project_admin(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    return render(
        request,
        "labeling/project_admin.html",
        {"project": project, **page_selectors.project_admin_data(project=project)},
    )


@roles.admin_page(PROJECT_PAGE_REFUSED)
@require_POST
def project_pause(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    paused = request.POST.get("paused") == "1"
    services.project_pause(project=project, paused=paused, actor=request.user)
    if paused:
        messages.info(
            request,
            gettext("%(project)s is paused: annotators get no new tasks until you resume it.")
            % {"project": project.name},
        )
    else:
        messages.info(request, gettext("%(project)s is running again.") % {"project": project.name})
    return redirect("project-admin", pk=project.pk)


@roles.admin_page(PROJECT_PAGE_REFUSED)
@require_POST
def project_hold_release(request, pk: int, hold_id: int):
    hold = get_object_or_404(Hold.objects.select_related("annotator"), pk=hold_id, project_id=pk)
    gold.hold_release(hold=hold, actor=request.user)
    messages.info(
        request, gettext("%(username)s may work in this project again.") % {"username": hold.annotator.username}
    )
    return redirect(reverse("project-admin", args=[pk]) + "#gold")
