"""The admin's training pages as an admin (and a researcher) sees them: deploying goes through a
confirmation that shows the version's evaluation; buttons say what they do; numbers read as
numbers; generation jobs say how long they have left; the home page and the navigation point where
they say; arena votes are not annotators' submissions; a researcher's links and permissions agree."""

import re
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import services as labeling_services
from labeling.models import Event, Ranking
from tests.factories import register_copy
from training.arena import services as arena
from training.arena.models import ArenaBattle
from training.registry import selectors
from training.registry.models import Deployment, GenerationJob
from training.rounds.models import STAGES, Round, RoundStage
from training.templatetags.training_format import duration, metric_rows, number

pytestmark = pytest.mark.django_db

LOST = {  # what the demo's first round showed: the new policy lost, and waited for a decision
    "win_rate": 0.375,
    "win_rate_ci": [0.2, 0.55],
    "decided_by": "new_reward_model",
    "judges": {"new_reward_model": {"win_rate": 0.375, "win_rate_ci": [0.2, 0.55], "verdict": "worse"}},
    "judges_disagree": False,
    "prompts": 8,
}
WON = {**LOST, "win_rate": 0.8, "win_rate_ci": [0.66, 0.92]}


@pytest.fixture
def versions(project, model_store, tiny_model_path, tiny_model_path_b):
    base = register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    round1 = register_copy(project, tiny_model_path_b, name="round 1 policy", store=model_store, parent=base)
    return base, round1


def third_version(project, model_store, tiny_model_path, tmp_path, parent):
    """Another checkpoint: the tiny model with one more file, so its content hash differs."""
    source = tmp_path / "variant"
    shutil.copytree(tiny_model_path, source)
    (source / "variant.txt").write_text("round 2")
    return register_copy(project, source, name="round 2 policy", store=model_store, parent=parent)


def round_of(project, base, policy, *, evaluation, status=Round.Status.SUCCEEDED, number_=1) -> Round:
    round_ = Round.objects.create(
        project=project,
        number=number_,
        status=status,
        config={"deploy": {"auto": True, "threshold": project.deploy_threshold}},
        base_policy=base,
        policy_version=policy,
        evaluation=evaluation,
    )
    RoundStage.objects.bulk_create(
        RoundStage(
            round=round_,
            name=name,
            position=i,
            status=RoundStage.Status.WAITING if name == "deploy" else RoundStage.Status.SUCCEEDED,
        )
        for i, name in enumerate(STAGES)
    )
    return round_


def deploy_url(project, version) -> str:
    return f"/projects/{project.pk}/models/{version.pk}/deploy/"


# --- deploying through the confirmation --------------------------------------------------------


def test_a_deploy_without_the_confirmation_deploys_nothing(client, project, versions, admin_user):
    base, round1 = versions
    client.force_login(admin_user)
    assert client.get(deploy_url(project, round1)).status_code == 200  # the confirmation page
    refused = client.post(deploy_url(project, round1))  # the old one-click form, or a script
    assert refused.status_code == 400
    assert "Nothing was deployed" in refused.content.decode()
    assert client.post(deploy_url(project, round1), {"confirm": "no"}).status_code == 400
    assert selectors.deployed_policy(project=project) == base and Deployment.objects.count() == 1

    confirmed = client.post(deploy_url(project, round1), {"confirm": "yes"})
    assert confirmed.status_code == 302 and confirmed.url == f"/projects/{project.pk}/models/"
    assert selectors.deployed_policy(project=project) == round1
    assert f"Deployed round 1 policy (v{round1.pk})" in client.get(confirmed.url).content.decode()


def test_only_admins_see_or_confirm_a_deploy(client, project, versions, annotator, researcher):
    _, round1 = versions
    for user in (annotator, researcher):
        client.force_login(user)
        assert client.get(deploy_url(project, round1)).status_code == 403
        assert client.post(deploy_url(project, round1), {"confirm": "yes"}).status_code == 403
    assert selectors.deployed_policy(project=project) != round1


def test_the_confirmation_shows_the_evaluation_and_warns_below_the_threshold(client, project, versions, admin_user):
    base, round1 = versions
    round_of(project, base, round1, evaluation=LOST)
    client.force_login(admin_user)
    page = client.get(deploy_url(project, round1)).content.decode()
    assert f"Deploy v{round1.pk}?" in page
    assert "Win rate over base (v" in page and "<strong>0.375</strong>" in page
    assert "(95% interval 0.200 – 0.550)" in page
    assert "Judge that decided</th><td>this round&#x27;s reward model" in page
    assert "Missed" in page and "must reach 0.550" in page
    assert (
        "This policy missed the deploy threshold" in page and "is 0.200, below the project's threshold of 0.550" in page
    )
    assert "Prompts evaluated</th><td>8" in page
    assert 'name="confirm" value="yes"' in page and f">Deploy v{round1.pk}</button>" in page


def test_the_confirmation_of_a_policy_that_passed_has_no_warning(client, project, versions, admin_user):
    base, round1 = versions
    round_of(project, base, round1, evaluation=WON)
    client.force_login(admin_user)
    page = client.get(deploy_url(project, round1)).content.decode()
    assert "Passed" in page and "0.660 – 0.920" in page
    assert "missed the deploy threshold" not in page


def test_the_threshold_is_the_projects_and_judges_that_disagree_block_it(client, project, versions, admin_user):
    base, round1 = versions
    round_ = round_of(project, base, round1, evaluation=WON)
    project.deploy_threshold = 0.7  # raised after the round ran
    project.save()
    client.force_login(admin_user)
    page = client.get(deploy_url(project, round1)).content.decode()
    assert "Missed" in page and "must reach 0.700" in page and "(the round was started with 0.550)" in page
    round_.evaluation = {**WON, "judges_disagree": True, "disagreement_blocks_deploy": True}
    round_.save()
    project.deploy_threshold = 0.55
    project.save()
    page = client.get(deploy_url(project, round1)).content.decode()
    assert "the judges disagree on whether it is better" in page


def test_a_version_no_round_evaluated_says_so(client, project, versions, admin_user):
    _, round1 = versions
    client.force_login(admin_user)
    page = client.get(deploy_url(project, round1)).content.decode()
    assert "No training round evaluated this version" in page


def test_a_round_waiting_for_a_decision_is_decided_by_the_confirmation(client, project, versions, admin_user):
    base, round1 = versions
    round_ = round_of(project, base, round1, evaluation=LOST, status=Round.Status.AWAITING_DECISION)
    client.force_login(admin_user)
    # The round page's deploy button leads to the confirmation of the round's policy.
    round_page = client.get(f"/rounds/{round_.pk}/").content.decode()
    assert f'href="/rounds/{round_.pk}/deploy/"' in round_page
    opened = client.get(f"/rounds/{round_.pk}/deploy/")
    assert opened.status_code == 302 and opened.url == deploy_url(project, round1)
    page = client.get(opened.url).content.decode()
    assert "Round 1 waits for this decision" in page and "This policy missed the deploy threshold" in page
    assert client.post(opened.url).status_code == 400  # still nothing without the confirmation
    round_.refresh_from_db()
    assert round_.status == Round.Status.AWAITING_DECISION

    done = client.post(opened.url, {"confirm": "yes"})
    assert done.status_code == 302 and done.url == f"/rounds/{round_.pk}/"
    round_.refresh_from_db()
    assert (round_.status, round_.deployed) == (Round.Status.SUCCEEDED, True)
    assert selectors.deployed_policy(project=project) == round1
    assert round_.stages.get(name="deploy").metrics["decision"] == "deployed"


# --- what the buttons say ----------------------------------------------------------------------


def test_buttons_say_deploy_roll_back_or_return(
    client, project, versions, admin_user, model_store, tiny_model_path, tmp_path
):
    base, round1 = versions
    round2 = third_version(project, model_store, tiny_model_path, tmp_path, parent=round1)
    client.force_login(admin_user)
    models = f"/projects/{project.pk}/models/"
    page = client.get(models).content.decode()
    assert f">Deploy v{round1.pk}</a>" in page and f">Deploy v{round2.pk}</a>" in page
    assert "Roll back to this" not in page

    client.post(deploy_url(project, round1), {"confirm": "yes"})
    page = client.get(models).content.decode()
    assert f">Roll back to v{base.pk} (older)</a>" in page and f">Deploy v{round2.pk}</a>" in page

    client.post(deploy_url(project, base), {"confirm": "yes"})  # the rollback
    assert selectors.deployed_policy(project=project) == base
    page = client.get(models).content.decode()
    assert f">Return to v{round1.pk} (newer)</a>" in page
    assert "Rolled back to base" in page
    assert client.get(deploy_url(project, round1)).content.decode().count(f"Return to v{round1.pk} (newer)") >= 2

    client.post(deploy_url(project, round1), {"confirm": "yes"})
    assert "Returned to round 1 policy" in client.get(models).content.decode()
    assert selectors.deployed_policy(project=project) == round1


# --- numbers -----------------------------------------------------------------------------------


def test_numbers_read_as_numbers():
    assert [number(v) for v in (18, 0.21, 0.375, 3.2, 123.456, 1234.5, 134515008, 5e-5, 100.0, True, None)] == [
        "18",
        "0.210",
        "0.375",
        "3.20",
        "123",
        "1,234",
        "134,515,008",
        "5.00e-05",
        "100",
        "yes",
        "—",
    ]
    assert [duration(s) for s in (40, 250.3, 7500, timedelta(minutes=3))] == [
        "40 s",
        "4 min 10 s",
        "2 h 5 min",
        "3 min 0 s",
    ]
    rows = metric_rows({"steps": 18, "evaluation": {"win_rate": 0.375, "decided_by": "new_reward_model"}})
    assert rows == [
        {"label": "steps", "value": "18"},
        {
            "label": "evaluation",
            "rows": [
                {"label": "win rate over the deployed policy", "value": "0.375"},
                {"label": "judge that decided", "value": "this round's reward model"},
            ],
        },
    ]


def test_the_models_page_formats_metrics_and_counts(client, project, versions, admin_user):
    _, round1 = versions
    round1.metrics = {
        "steps": 18,
        "train_loss_last": 1.234567,
        "seconds": 250.3,
        "kl_checks": [{"step": 6, "kl": 0.5}, {"step": 12, "kl": 0.9}],
        "evaluation": {"win_rate": 0.375, "prompts": 8, "judges_disagree": False},
    }
    round1.save()
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/models/").content.decode()
    assert '<th scope="row">Steps</th><td class="num">18</td>' in page
    assert '<th scope="row">Training loss, last step</th><td class="num">1.23</td>' in page
    assert '<th scope="row">Training time</th><td class="num">4 min 10 s</td>' in page
    assert '<th scope="row">KL checks</th><td class="num">2 recorded</td>' in page
    assert '<th scope="rowgroup" colspan="2" class="metric-group">Evaluation</th>' in page
    assert (
        '<th scope="row" class="metric-nested">Win rate over the deployed policy</th><td class="num">0.375</td>' in page
    )
    assert "1.234567" not in page and "{&#x27;" not in page and "18.000" not in page
    parameters = round1.config["parameters"]
    assert f'title="{parameters:,} parameters"' in page and re.search(r">\d[\d.]*M</span>", page)
    assert '<div class="table-scroll">' in page


def test_the_rounds_form_groups_settings_by_stage_with_readable_labels_and_help(client, project, versions, admin_user):
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/rounds/").content.decode()
    groups = re.findall(r'<details class="stage-group" id="stage-(\w+)"', page)
    assert groups == ["data", "sft", "reward", "policy", "evaluate", "deploy", "execution"]
    assert "<strong>Supervised fine-tuning (SFT)</strong>" in page and "<strong>Evaluation</strong>" in page
    assert "> Train LoRA adapters</label>" in page and "LoRA rank" in page and "lora lora rank" not in page.lower()
    assert (
        '<p class="setting-help" id="setting-sft-lora-help">Train LoRA adapters (merged into the saved model) instead of every weight.</p>'
        in page
    )
    assert 'aria-describedby="setting-sft-lora_rank-help"' in page
    assert '<select id="setting-data-rankings" name="data.rankings"' in page  # choices are a list, not free text
    assert '<option value="best_worst" selected>best answer against worst</option>' in page


def test_the_rounds_table_shows_the_win_rate_with_its_interval(client, project, versions, admin_user):
    base, round1 = versions
    round_of(project, base, round1, evaluation=LOST)
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/rounds/").content.decode()
    assert '0.375 <span class="muted small">(0.200 – 0.550)</span>' in page


# --- generation jobs: time left ------------------------------------------------------------------


def test_a_running_generation_job_says_how_long_it_has_left(client, project, versions, admin_user):
    base, _ = versions
    now = timezone.now()
    job = GenerationJob.objects.create(
        project=project,
        model_version=base,
        status=GenerationJob.Status.RUNNING,
        prompts_total=40,
        prompts_done=10,
        started_at=now - timedelta(seconds=60),
    )
    # 10 prompts in 60 s: 6 s a prompt, 30 prompts to go.
    assert selectors.generation_job_time_left(job, now=now) == timedelta(seconds=180)
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/models/").content.decode()
    assert "10 / 40 prompts" in page and re.search(r"· about 3 min \d+ s left", page)

    job.prompts_done = 0
    job.save()
    assert selectors.generation_job_time_left(job, now=now) is None
    assert "time left known after the first prompts" in client.get(f"/projects/{project.pk}/models/").content.decode()
    job.status, job.prompts_done = GenerationJob.Status.SUCCEEDED, 40
    job.save()
    assert selectors.generation_job_time_left(job, now=now) is None


# --- home page and navigation ------------------------------------------------------------------


def test_the_navigation_opens_the_project_page_not_the_django_admin(client, project, versions, admin_user):
    client.force_login(admin_user)
    home = client.get("/").content.decode()
    assert "Project admin" not in home and "/admin/labeling/project/" not in home
    assert '<a href="/admin/">Django admin</a>' in home  # named as what it is
    models = client.get(f"/projects/{project.pk}/models/").content.decode()
    assert f'<a href="/projects/{project.pk}/admin/">Project page</a>' in models


def test_the_researchers_home_page_points_to_datasets_not_a_later_release(client, project, researcher):
    client.force_login(researcher)
    home = client.get("/").content.decode()
    assert "later release" not in home
    assert 'the <a href="/datasets/">Datasets</a> page' in home


# --- arena votes are not annotators' submissions -----------------------------------------------


def admin_votes_in_the_arena(project, versions, admin_user) -> ArenaBattle:
    base, round1 = versions
    prompt, _ = labeling_services.prompt_create(project=project, messages="Which is the highest peak?")
    battle = ArenaBattle.objects.create(
        project=project,
        prompt=prompt,
        version_a=base,
        version_b=round1,
        answer_a="Yushan.",
        answer_b="K2.",
        created_by=admin_user,
        status=ArenaBattle.Status.DONE,
    )
    arena.arena_vote(battle_id=battle.pk, user=admin_user, vote="a")
    battle.refresh_from_db()
    return battle


def test_arena_votes_are_kept_as_arena_votes_not_submissions(client, project, versions, admin_user):
    battle = admin_votes_in_the_arena(project, versions, admin_user)
    # Every accepted write is kept: the vote, its ranking (labeling data) and their audit events.
    assert battle.vote == "a" and Ranking.objects.filter(task=battle.task, annotator=admin_user).exists()
    assert Event.objects.filter(verb="arena.voted", payload__battle_id=battle.pk).exists()
    assert Event.objects.filter(verb="arena.ranking_recorded", task=battle.task).exists()
    assert not Event.objects.filter(verb="ranking.submitted").exists()
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/admin/").context
    assert page["submissions_total"] == 0 and page["last_24h"] == 0


def test_an_admin_who_only_voted_in_the_arena_is_not_an_active_annotator(client, project, versions, admin_user):
    admin_votes_in_the_arena(project, versions, admin_user)
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/admin/").context
    assert page["active_annotators"] == []


# --- researchers: the playground and the leaderboard, not battles --------------------------------


@pytest.mark.parametrize(
    ("role", "playground", "leaderboard", "arena_"),
    [
        ("researcher", 200, 200, 403),
        ("annotator", 200, 200, 200),
        ("admin_user", 200, 200, 200),
        ("outsider", 403, 403, 403),
    ],
)
def test_who_may_open_the_playground_leaderboard_and_arena(
    client, request, project, role, playground, leaderboard, arena_
):
    client.force_login(request.getfixturevalue(role))
    assert client.get(f"/projects/{project.pk}/playground/").status_code == playground
    assert client.get(f"/projects/{project.pk}/arena/leaderboard/").status_code == leaderboard
    assert client.get(f"/projects/{project.pk}/arena/").status_code == arena_
    # A permitted POST is answered with a redirect (here: the project has no versions to battle).
    assert client.post(f"/projects/{project.pk}/arena/", {"prompt": "Hi"}).status_code == (
        403 if arena_ == 403 else 302
    )


def test_a_researcher_is_linked_to_what_they_may_open(client, project, versions, researcher, annotator):
    client.force_login(researcher)
    playground, leaderboard, arena_ = (
        f"/projects/{project.pk}/playground/",
        f"/projects/{project.pk}/arena/leaderboard/",
        f"/projects/{project.pk}/arena/",
    )
    home = client.get("/").content.decode()
    assert f'href="{playground}"' in home and f'href="{leaderboard}"' in home and f'href="{arena_}"' not in home
    for url in (playground, leaderboard):
        page = client.get(url).content.decode()
        assert f'href="{playground}"' in page and f'href="{leaderboard}"' in page
        assert f'href="{arena_}"' not in page  # no link to a page that refuses them
    refused = client.get(arena_).content.decode()
    assert "only annotators and admins start battles" in refused

    client.force_login(annotator)  # annotators keep the arena, and reach the playground from it
    assert f'href="{arena_}"' in client.get("/").content.decode()
    assert f'href="{playground}"' in client.get(arena_).content.decode()
