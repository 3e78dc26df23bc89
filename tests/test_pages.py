"""The server-rendered pages: who may open which, what they show, and that untrusted text is escaped."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from labeling import leases, submissions
from labeling.models import Event, Project
from labeling.page_selectors import hourly_completions
from tests.factories import PASSWORD, add_demonstration_task, add_ranking_task, new_client_id

SCRIPT = "<script>alert(1)</script>"


def client_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def page_urls(project) -> dict[str, str]:
    return {
        "home": reverse("home"),
        "annotate": reverse("annotate", args=[project.pk]),
        "progress": reverse("progress"),
        "project-admin": reverse("project-admin", args=[project.pk]),
    }


@pytest.mark.parametrize("page", ["home", "annotate", "progress", "project-admin"])
def test_anonymous_users_are_sent_to_login(project, page):
    url = page_urls(project)[page]
    response = client_for().get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.parametrize(
    ("role", "page", "status"),
    [
        ("annotator", "home", 200),
        ("annotator", "annotate", 200),
        ("annotator", "progress", 200),
        ("annotator", "project-admin", 403),
        ("researcher", "home", 200),
        ("researcher", "annotate", 403),
        ("researcher", "progress", 403),
        ("researcher", "project-admin", 403),
        ("admin_user", "home", 200),
        ("admin_user", "annotate", 403),
        ("admin_user", "project-admin", 200),
        ("outsider", "home", 200),
        ("outsider", "annotate", 403),
        ("outsider", "progress", 403),
        ("outsider", "project-admin", 403),
    ],
)
def test_page_status_by_role(request, project, role, page, status):
    user = request.getfixturevalue(role)
    response = client_for(user).get(page_urls(project)[page])
    assert response.status_code == status
    if status == 403:
        assert b"You can\xe2\x80\x99t open this page" in response.content  # our 403 page, not a bare one


def test_annotate_page_of_a_missing_project_is_404(annotator):
    assert client_for(annotator).get(reverse("annotate", args=[999])).status_code == 404


def test_login_form_logs_in_and_goes_home(annotator):
    client = Client()
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="username"' in page.content and b'name="password"' in page.content
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_login_is_rate_limited(annotator, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    client = Client()
    assert client.post(reverse("login"), {"username": "alice", "password": "wrong"}).status_code == 200
    assert client.post(reverse("login"), {"username": "alice", "password": "wrong"}).status_code == 429
    blocked = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert blocked.status_code == 429
    assert b"Too many failed attempts" in blocked.content


def test_logout_is_a_post_form_in_the_navigation(annotator):
    client = client_for(annotator)
    page = client.get(reverse("home")).content.decode()
    assert f'method="post" action="{reverse("logout")}"' in page
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_home_for_an_annotator_links_to_labeling_with_progress(annotator, project):
    task = add_demonstration_task(project)
    leases.task_next_for(annotator=annotator, project=project)
    submissions.demonstration_submit(annotator=annotator, task_id=task.pk, text="玉山", client_id=new_client_id())
    page = client_for(annotator).get(reverse("home")).content.decode()
    assert reverse("annotate", args=[project.pk]) in page
    assert "Start labeling" in page
    assert "<strong>1</strong> done today · <strong>1</strong> in total" in page
    assert reverse("project-admin", args=[project.pk]) not in page


def test_home_for_a_researcher_explains_read_access(researcher, project):
    page = client_for(researcher).get(reverse("home")).content.decode()
    assert "read access" in page
    assert "Start labeling" not in page


def test_home_for_an_admin_links_to_project_pages(admin_user, project):
    page = client_for(admin_user).get(reverse("home")).content.decode()
    assert reverse("project-admin", args=[project.pk]) in page
    assert "Start labeling" not in page


def test_annotate_page_has_guidelines_settings_and_csrf_cookie(annotator, project, settings):
    settings.DEMONSTRATION_MAX_CHARS = 1234
    response = client_for(annotator).get(reverse("annotate", args=[project.pk]))
    page = response.content.decode()
    assert "<h1>Be <em>kind</em></h1>" in page  # the guidelines, rendered as markdown
    assert 'data-max-chars="1234"' in page
    assert 'id="flag-names"' in page and "factually_wrong" in page
    assert "csrftoken" in response.cookies  # the page's script sends it back as X-CSRFToken
    assert 'lang="en' in page and '<meta charset="utf-8">' in page


def test_untrusted_guidelines_are_escaped(annotator, project):
    Project.objects.filter(pk=project.pk).update(guidelines=f"Read this {SCRIPT} <img src=x onerror=alert(2)>")
    page = client_for(annotator).get(reverse("annotate", args=[project.pk])).content.decode()
    assert SCRIPT not in page
    assert "<img src=x" not in page  # shown as text: "&lt;img src=x onerror=…&gt;"


def test_untrusted_prompts_and_answers_are_escaped_on_the_progress_page(annotator, project):
    demo_task = add_demonstration_task(project, text=f"Explain this: {SCRIPT}")
    rank_task = add_ranking_task(
        project, text=f"Rank: {SCRIPT}", answers=[SCRIPT, "b <b>x</b>", "[c](javascript:alert(3))"]
    )
    leases.task_next_for(annotator=annotator, project=project)
    submissions.demonstration_submit(
        annotator=annotator, task_id=demo_task.pk, text=f"my {SCRIPT}", client_id=new_client_id()
    )
    assignment = leases.task_next_for(annotator=annotator, project=project)
    assert assignment.task == rank_task
    ids = list(rank_task.candidates.values_list("public_id", flat=True))
    submissions.ranking_submit(annotator=annotator, task_id=rank_task.pk, ranking=[ids], client_id=new_client_id())

    page = client_for(annotator).get(reverse("progress")).content.decode()
    assert "Explain this:" in page and "Rank:" in page
    assert SCRIPT not in page
    assert 'href="javascript:' not in page
    assert "&lt;script&gt;" in page  # shown as text, not run


def test_progress_page_lists_only_my_submissions_with_edit_forms(annotator, annotator2, project):
    task = add_demonstration_task(project)
    for user, text in [(annotator, "my answer 我的"), (annotator2, "bob's answer")]:  # overlap 2: both answer it
        leases.task_next_for(annotator=user, project=project)
        submissions.demonstration_submit(annotator=user, task_id=task.pk, text=text, client_id=new_client_id())

    page = client_for(annotator).get(reverse("progress")).content.decode()
    assert "my answer 我的" in page
    assert "bob&#x27;s answer" not in page and "bob's answer" not in page
    demonstration = annotator.demonstrations.get()
    assert reverse("api-demonstration-edit", args=[demonstration.pk]) in page
    assert "<textarea" in page


def test_progress_page_ranking_edit_form_shows_current_ranks(annotator, project):
    task = add_ranking_task(project)
    assignment = leases.task_next_for(annotator=annotator, project=project)
    first, second, third = assignment.candidate_order
    submissions.ranking_submit(
        annotator=annotator,
        task_id=task.pk,
        ranking=[[second], [first, third]],
        ratings={second: 6},
        flags={first: ["harmful"]},
        client_id=new_client_id(),
    )
    page = client_for(annotator).get(reverse("progress")).content.decode()
    ranking = annotator.rankings.get()
    assert reverse("api-ranking-edit", args=[ranking.pk]) in page
    assert "B › A = C" in page  # letters in the order the annotator saw the answers
    # The ranking board (static/labeling/annotate/board.js) starts from the stored ranking.
    assert f'"ranking": [["{second}"], ["{first}", "{third}"]]' in page
    assert f'"flags": {{"{first}": ["harmful"]}}' in page


def test_submissions_past_the_window_are_not_editable(annotator, project, settings):
    task = add_demonstration_task(project)
    leases.task_next_for(annotator=annotator, project=project)
    submissions.demonstration_submit(annotator=annotator, task_id=task.pk, text="old answer", client_id=new_client_id())
    settings.SUBMISSION_EDIT_WINDOW_SECONDS = 0
    page = client_for(annotator).get(reverse("progress")).content.decode()
    assert "old answer" in page
    assert "<textarea" not in page


def test_project_admin_page_shows_tasks_leases_and_import_link(admin_user, annotator, project):
    add_demonstration_task(project)
    add_ranking_task(project)
    leases.task_next_for(annotator=annotator, project=project)
    page = client_for(admin_user).get(reverse("project-admin", args=[project.pk])).content.decode()
    assert "Demonstration" in page and "Ranking" in page
    assert "alice" in page  # her open lease
    assert reverse("admin:labeling_project_import", args=[project.pk]) in page
    assert page.count('class="bar-slot"') == 24
    assert "Pause project" in page


def test_pause_button_pauses_and_resumes(admin_user, annotator, project):
    client = client_for(admin_user)
    url = reverse("project-pause", args=[project.pk])
    response = client.post(url, {"paused": "1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("project-admin", args=[project.pk])
    project.refresh_from_db()
    assert project.paused
    assert Event.objects.filter(verb="project.paused", actor=admin_user, project=project).exists()
    assert "Resume project" in client.get(response["Location"]).content.decode()

    client.post(url, {"paused": "0"})
    project.refresh_from_db()
    assert not project.paused


def test_only_admins_can_pause(annotator, project):
    client = client_for(annotator)
    assert client.post(reverse("project-pause", args=[project.pk]), {"paused": "1"}).status_code == 403
    project.refresh_from_db()
    assert not project.paused
    admin = client_for()
    assert admin.post(reverse("project-pause", args=[project.pk]), {"paused": "1"}).status_code == 302  # to login


def test_admin_change_form_links_to_the_project_page(admin_user, project):
    admin_user.is_superuser = True
    admin_user.save()
    page = client_for(admin_user).get(reverse("admin:labeling_project_change", args=[project.pk])).content.decode()
    assert reverse("project-admin", args=[project.pk]) in page


def test_hourly_completions_fill_the_empty_hours():
    now = datetime(2025, 5, 1, 12, 30, tzinfo=UTC)
    rows = [{"hour": datetime(2025, 5, 1, 12, tzinfo=UTC), "count": 4}, {"hour": now - timedelta(hours=3), "count": 2}]
    buckets = hourly_completions(rows=rows, now=now)
    assert len(buckets) == 24
    assert buckets[-1]["count"] == 4 and buckets[-1]["percent"] == 100
    assert buckets[-4]["count"] == 2 and buckets[-4]["percent"] == 50
    assert sum(b["count"] for b in buckets) == 6
