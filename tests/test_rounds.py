"""Training rounds as an admin runs them: one button turns the labels into a new policy, stage by
stage, watched live; failures, cancels and dead workers never change the deployed policy."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from labeling.errors import Conflict, LabelingError
from labeling.imports import dataset_import
from labeling.models import Project, Prompt
from labeling.services import prompt_create
from tests.factories import DEMOS, PREFERENCES, TINY, api_client, register_copy
from training.datasets.services import snapshot_file
from training.ml.common import load_records
from training.registry import selectors
from training.registry.models import GenerationJob, ModelVersion
from training.rounds import runner, stages
from training.rounds import services as rounds
from training.rounds.config import round_config_clean
from training.rounds.models import Round, RoundMetric, RoundStage

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled(project, model_store, tiny_model_path, settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    dataset_import(project=project, text=DEMOS, fmt="conversations", source="demos")
    dataset_import(project=project, text=PREFERENCES, fmt="preferences", source="prefs")
    base = register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    return project, base


def run_all(round_):
    while runner.round_stage_run(round_id=round_.pk) is not None:
        pass
    round_.refresh_from_db()
    return round_


def test_a_round_runs_every_stage_and_records_lineage_curves_and_evaluation(labeled, admin_user):
    project, base = labeled
    round_ = run_all(
        rounds.round_start(
            project=project, config={**TINY, "deploy": {"threshold": 0.0}}, actor=admin_user, enqueue=False
        )
    )
    assert round_.status == Round.Status.SUCCEEDED, (round_.error, list(round_.stages.values("name", "error")))
    assert [s.status for s in round_.stages.all()] == ["succeeded"] * 6
    assert round_.sft_version.parent == base and round_.sft_version.round_number == 1
    assert round_.reward_version.kind == ModelVersion.Kind.REWARD and round_.reward_version.parent == round_.sft_version
    assert round_.policy_version.parent == round_.sft_version
    # By default the reward model and the policy stage read every ranking, its pairs weighted by reliability.
    assert set(round_.snapshots.values_list("kind", flat=True)) == {"sft", "ranking"}
    assert round_.snapshots.get(kind="ranking").filters.get("weighted") is True
    # Live curves: the loss per SFT step, accuracy of the reward model, and per iteration of the
    # default policy stage (iterative DPO) its samples' mean reward, KL and length, and its pairs.
    sft_points = RoundMetric.objects.filter(stage__round=round_, stage__name="sft")
    assert len([p for p in sft_points if "loss" in p.values]) >= 2
    rl = [p.values for p in RoundMetric.objects.filter(stage__round=round_, stage__name="policy")]
    assert any({"reward", "kl", "mean_length", "pairs"} <= set(v) for v in rl), rl
    for key in ("win_rate", "new_mean_reward", "old_mean_reward", "kl", "new_mean_length"):
        assert key in round_.evaluation
    # Threshold 0: the new policy deploys itself and the next round's candidates come from it.
    assert round_.deployed and selectors.deployed_policy(project=project) == round_.policy_version
    assert GenerationJob.objects.get(project=project).model_version == round_.policy_version


def test_a_policy_below_the_threshold_waits_for_the_admin(labeled, admin_user):
    project, base = labeled
    round_ = run_all(
        rounds.round_start(
            project=project, config={**TINY, "deploy": {"threshold": 1.0}}, actor=admin_user, enqueue=False
        )
    )
    if round_.evaluation["win_rate"] >= 1.0:
        pytest.skip("the tiny policy happened to win every comparison")
    assert round_.status == Round.Status.AWAITING_DECISION
    assert selectors.deployed_policy(project=project) == base
    rounds.round_decide(round_=round_, deploy=False, actor=admin_user)
    round_.refresh_from_db()
    assert round_.status == Round.Status.SUCCEEDED and not round_.deployed
    assert selectors.deployed_policy(project=project) == base


def test_a_failed_stage_leaves_the_deployed_policy_and_retry_resumes_there(labeled, admin_user, monkeypatch):
    project, base = labeled
    round_ = rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(stages, "train_reward_model", broken)
    with pytest.raises(RuntimeError):
        run_all(round_)
    round_.refresh_from_db()
    assert round_.status == Round.Status.FAILED and "reward: RuntimeError: CUDA out of memory" in round_.error
    assert round_.stages.get(name="reward").status == RoundStage.Status.FAILED
    assert selectors.deployed_policy(project=project) == base
    sft_version = round_.sft_version
    monkeypatch.undo()
    rounds.round_retry(round_=round_, actor=admin_user)
    round_ = run_all(round_)
    assert round_.stages.get(name="sft").attempts == 1  # not trained again
    assert round_.stages.get(name="reward").attempts == 2
    assert round_.sft_version == sft_version and round_.status in (
        Round.Status.SUCCEEDED,
        Round.Status.AWAITING_DECISION,
    )


def test_cancel_stops_the_running_stage_at_its_next_step(labeled, admin_user, monkeypatch):
    project, base = labeled
    round_ = rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)
    original = runner.StageReporter.progress

    def cancel_on_first_step(self, step, total, metrics):
        original(self, step, total, metrics)
        if self.stage.name == "sft" and step >= 1:
            Round.objects.filter(pk=round_.pk).update(cancel_requested=True)

    monkeypatch.setattr(runner.StageReporter, "progress", cancel_on_first_step)
    monkeypatch.setattr(
        runner.StageReporter,
        "should_stop",
        lambda self: Round.objects.filter(pk=self.stage.round_id, cancel_requested=True).exists(),
    )
    round_ = run_all(round_)
    assert round_.status == Round.Status.CANCELLED
    assert [s.status for s in round_.stages.all()] == [
        "succeeded",
        "cancelled",
        "cancelled",
        "cancelled",
        "cancelled",
        "cancelled",
    ]
    assert round_.sft_version is None and selectors.deployed_policy(project=project) == base


def test_a_dead_worker_leaves_the_round_failed_not_running(labeled, admin_user, settings):
    project, _ = labeled
    round_ = rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)
    stale = timezone.now() - timedelta(seconds=settings.ROUND_STALE_SECONDS + 1)
    round_.stages.filter(name="snapshot").update(status="running", started_at=stale, heartbeat_at=stale)
    Round.objects.filter(pk=round_.pk).update(status="running")
    assert rounds.rounds_fail_stale() == 1
    round_.refresh_from_db()
    assert round_.status == Round.Status.FAILED and "stopped responding" in round_.error
    assert runner.round_stage_run(round_id=round_.pk) is None  # a late redelivery does nothing


def test_one_round_at_a_time_and_a_deployed_policy_is_needed(labeled, admin_user, project):
    project, _ = labeled
    rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)
    with pytest.raises(Conflict, match="still"):
        rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)


@pytest.mark.parametrize(
    "config, words",
    [
        ({"sft": {"epochz": 1}}, "no setting 'epochz'"),
        ({"policy": {"algorithm": "ppo"}}, "rloo, grpo, dpo or iterative_dpo"),
        ({"reward": {"learning_rate": "fast"}}, "must be a float"),
        ({"stages": {}}, "no section"),
        ({"deploy": {"threshold": 2}}, "win rate from 0 to 1"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(labeled, config, words):
    project, _ = labeled
    with pytest.raises(LabelingError, match=words):
        round_config_clean(config, project=project)


def test_rounds_api_is_for_admins(labeled, admin_user, annotator, researcher, django_capture_on_commit_callbacks):
    project, _ = labeled
    body = {"project": project.pk, "config": TINY}
    assert api_client(annotator).post("/api/v1/rounds/", body, format="json").status_code == 403
    assert api_client(researcher).post("/api/v1/rounds/", body, format="json").status_code == 403
    bad = api_client(admin_user).post(
        "/api/v1/rounds/", {"project": project.pk, "config": {"sft": {"x": 1}}}, format="json"
    )
    assert bad.status_code == 400 and "config" in bad.json()["errors"]
    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client(admin_user).post("/api/v1/rounds/", body, format="json")
    assert response.status_code == 202 and len(callbacks) == 1  # the first stage is queued after commit
    detail = api_client(admin_user).get(f"/api/v1/rounds/{response.json()['id']}/").json()
    assert [s["name"] for s in detail["stages"]] == ["snapshot", "sft", "reward", "policy", "evaluate", "deploy"]
    assert api_client(admin_user).post(f"/api/v1/rounds/{detail['id']}/cancel/").json()["status"] == "cancelled"


def test_round_pages_for_admins(client, labeled, admin_user, annotator):
    project, _ = labeled
    round_ = rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)
    client.force_login(annotator)
    assert client.get(f"/projects/{project.pk}/rounds/").status_code == 403
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/rounds/")
    assert page.status_code == 200 and b"policy.algorithm" in page.content
    # The form offers every policy algorithm and starts from the round's default, DPO.
    assert all(f'<option value="{a}"'.encode() in page.content for a in ("dpo", "iterative_dpo", "rloo", "grpo"))
    assert b'<option value="iterative_dpo" selected>' in page.content
    assert client.get(f"/rounds/{round_.pk}/").status_code == 200


def test_start_round_command_runs_here(labeled, capsys):
    from django.core.management import call_command

    project, _ = labeled
    config = Path(project.name + ".json")
    try:
        import json

        config.write_text(json.dumps({**TINY, "deploy": {"threshold": 0.0}}))
        call_command("start_round", project=project.name, config=config, here=True)
    finally:
        config.unlink(missing_ok=True)
    out = capsys.readouterr().out
    assert "Round 1 of Mountains started" in out and "Round 1: Succeeded" in out and "win_rate" in out


def test_the_round_form_and_the_api_refuse_an_out_of_range_setting_by_name(client, labeled, admin_user):
    project, _ = labeled
    client.force_login(admin_user)
    page = client.post(f"/projects/{project.pk}/rounds/", {"sft.epochs": "-5", "policy.algorithm": "rloo"}, follow=True)
    assert page.status_code == 200
    assert "sft.epochs must be a whole number from 1 to 100" in page.content.decode()
    body = {"project": project.pk, "config": {"sft": {"epochs": -5}, "reward": {"learning_rate": float("1e30")}}}
    answer = api_client(admin_user).post("/api/v1/rounds/", body, format="json")
    assert answer.status_code == 400
    assert answer.json()["errors"]["config.sft.epochs"] == ["must be a whole number from 1 to 100"]
    assert "config.reward.learning_rate" in answer.json()["errors"]
    assert not Round.objects.filter(project=project).exists()


def test_the_next_round_is_judged_by_the_previous_rounds_reward_model_too(labeled, admin_user):
    project, base = labeled
    deploy_anything = {**TINY, "deploy": {"threshold": 0.0}}
    first = run_all(rounds.round_start(project=project, config=deploy_anything, actor=admin_user, enqueue=False))
    assert first.deployed and set(first.evaluation["judges"]) == {"new_reward_model"}  # a base policy has no round
    GenerationJob.objects.filter(project=project).delete()  # the job the deploy queued; no worker runs here
    second = run_all(rounds.round_start(project=project, config=deploy_anything, actor=admin_user, enqueue=False))
    assert second.base_policy == first.policy_version
    assert set(second.evaluation["judges"]) == {"new_reward_model", "previous_reward_model"}
    # The deployed policy is the first round's new one, which answered the same split the same way
    # there: its answers are reused (scored again by both judges), not sampled a second time.
    assert not first.evaluation["reused_old_answers"] and second.evaluation["reused_old_answers"]
    assert [r["old_answer"] for r in second.evaluation["rows"]] == [r["new_answer"] for r in first.evaluation["rows"]]
    assert [r["old_tokens"] for r in second.evaluation["rows"]] == [r["new_tokens"] for r in first.evaluation["rows"]]
    # Both reward models ordered the same held-out human rankings: which one to trust is measured.
    compared = second.evaluation["reward_models_compared"]
    assert compared["rankings"] == second.evaluation["reward_model_accuracy"]["rankings"] >= 1
    assert compared["difference"] == pytest.approx(
        second.evaluation["reward_model_accuracy"]["accuracy"]
        - second.evaluation["previous_reward_model_accuracy"]["accuracy"]
    )
    assert second.evaluation["decided_by"] in second.evaluation["judges"]
    low, high = second.evaluation["win_rate_ci"]
    assert 0 <= low <= second.evaluation["win_rate"] <= high <= 1
    assert "95% interval" in second.stages.get(name="deploy").log


def test_the_next_round_fine_tunes_only_on_demonstrations_its_policy_has_not_learned(labeled, admin_user):
    project, _ = labeled
    deploy_anything = {**TINY, "deploy": {"threshold": 0.0}}

    def next_round(config=deploy_anything):
        GenerationJob.objects.filter(project=project).delete()  # the job a deploy queued; no worker runs here
        return run_all(rounds.round_start(project=project, config=config, actor=admin_user, enqueue=False))

    first = next_round()
    assert first.deployed and first.stages.get(name="sft").status == "succeeded"
    # Nothing new to imitate: the deployed policy stands in for the SFT model, and what its
    # policy stage learned is not trained away again.
    second = next_round()
    assert second.stages.get(name="sft").status == "skipped", second.error
    assert second.sft_version == first.policy_version and second.status == Round.Status.SUCCEEDED
    new = [f"New question {i}: where is Jade Mountain?" for i in range(4)]
    dataset_import(
        project=project,
        text="\n".join(
            json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "In Taiwan."}]})
            for q in new
        ),
        fmt="conversations",
        source="new demos",
    )
    trainable = Prompt.objects.filter(project=project, held_out=False, messages__0__content__in=new).count()
    assert trainable >= 1
    third = next_round()
    sft = third.sft_version.metrics
    assert sft["train_conversations"] + sft["held_out_conversations"] == trainable
    assert "already learned by the deployed policy" in third.stages.get(name="sft").log
    # data.demonstrations "all" trains on every demonstration again.
    everything = next_round({**deploy_anything, "data": {"demonstrations": "all"}})
    sft = everything.sft_version.metrics
    assert sft["train_conversations"] + sft["held_out_conversations"] > trainable


def test_the_frozen_evaluation_split_never_enters_training_and_is_what_rounds_evaluate_on(labeled, admin_user):
    project, _ = labeled
    Prompt.objects.filter(project=project).update(held_out=False)
    split = list(Prompt.objects.filter(project=project).order_by("id")[:12:6])  # a demonstration and a ranking
    Prompt.objects.filter(pk__in=[p.pk for p in split]).update(held_out=True)
    held_out_texts = {p.messages[-1]["content"] for p in split}
    round_ = run_all(
        rounds.round_start(
            project=project, config={**TINY, "deploy": {"threshold": 0.0}}, actor=admin_user, enqueue=False
        )
    )
    assert round_.status == Round.Status.SUCCEEDED, round_.error
    trained = set()
    for snapshot in round_.snapshots.all():
        assert snapshot.filters["exclude_held_out"] is True
        for row in load_records(snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)[0]):
            trained.add((row.get("prompt") or row["messages"][:-1])[-1]["content"])
    assert trained and not trained & held_out_texts
    assert round_.evaluation["evaluation_split"] == "frozen"
    # Every split prompt is asked, each as often as the round samples answers, and nothing else is.
    asked = [row["prompt"][-1]["content"] for row in round_.evaluation["rows"]]
    samples = round_.evaluation["samples_per_prompt"]
    assert samples >= 1
    assert asked == [p.messages[-1]["content"] for p in split] * samples
    # The split's human rankings judge the reward model and the policy, each with an interval.
    for judge in ("reward_model_accuracy", "implicit_reward_accuracy"):
        judged = round_.evaluation[judge]
        assert judged["pairs"] >= 1 and judged["rankings"] >= 1
        assert 0 <= judged["accuracy_ci"][0] <= judged["accuracy"] <= judged["accuracy_ci"][1] <= 1


def test_new_prompts_join_the_split_by_their_text_at_the_projects_share(project):
    project.held_out_share = 0.25
    project.save()
    prompts = [prompt_create(project=project, messages=f"Which peak is number {i}?")[0] for i in range(400)]
    share = sum(p.held_out for p in prompts) / len(prompts)
    assert 0.18 < share < 0.32
    again = Project.objects.create(name="Same prompts elsewhere", held_out_share=0.25)
    twins = [prompt_create(project=again, messages=p.messages)[0] for p in prompts[:50]]
    assert [t.held_out for t in twins] == [p.held_out for p in prompts[:50]]  # decided by the text, not by chance


def test_a_queued_round_says_what_it_waits_for(client, labeled, admin_user):
    project, base = labeled
    job = GenerationJob.objects.create(
        project=project,
        model_version=base,
        status=GenerationJob.Status.RUNNING,
        prompts_total=40,
        prompts_done=10,
        started_at=timezone.now() - timedelta(minutes=5),
        heartbeat_at=timezone.now(),
    )
    round_ = rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)
    detail = api_client(admin_user).get(f"/api/v1/rounds/{round_.pk}/").json()
    assert f"generation job {job.pk}" in detail["waiting_for"]
    assert "10 / 40 prompts, about 15 min left, pauses within seconds" in detail["waiting_for"]
    # A job that already paused once for this stage runs on (the stage's message did not come first).
    GenerationJob.objects.filter(pk=job.pk).update(yielded_to_stage=round_.stages.get(name="snapshot").pk)
    detail = api_client(admin_user).get(f"/api/v1/rounds/{round_.pk}/").json()
    assert "about 15 min left. The round's next stage starts after it." in detail["waiting_for"]
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.SUCCEEDED)
    Round.objects.filter(pk=round_.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    detail = api_client(admin_user).get(f"/api/v1/rounds/{round_.pk}/").json()
    assert "no gpu worker has taken it yet" in detail["waiting_for"]
    client.force_login(admin_user)
    assert b'id="round-waiting"' in client.get(f"/rounds/{round_.pk}/").content
    # Between two stages of a round that has run for long, the next stage is seconds in the queue.
    round_.stages.filter(name="snapshot").update(status=RoundStage.Status.SUCCEEDED, finished_at=timezone.now())
    detail = api_client(admin_user).get(f"/api/v1/rounds/{round_.pk}/").json()
    assert detail["waiting_for"] == "Queued on the gpu queue."
