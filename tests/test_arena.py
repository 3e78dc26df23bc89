"""The arena: blind A/B battles, votes that become K=2 rankings, the Bradley–Terry leaderboard on
known votes, and the playground. Both are answered by the interactive worker: here its service is
called directly (`answered`); tests/test_interactive_queue.py runs the real worker."""

import random

import pytest

from labeling import leases
from labeling import services as labeling_services
from labeling.errors import Conflict, TooManyRequests
from labeling.models import Assignment, Candidate, Event, Ranking, Task
from tests.factories import register_copy
from training.arena import selectors, services
from training.arena.models import ArenaBattle, PlaygroundTurn
from training.ml.arena import Vote, fit_scores, leaderboard, win_probability


@pytest.fixture(autouse=True)
def short_answers(settings):
    settings.PLAYGROUND_MAX_NEW_TOKENS = 12  # tiny random models ramble; keep tests quick
    settings.INTERACTIVE_GENERATION_RATE = "1000/min"  # tests below start many; one test checks the limit


# --- Bradley–Terry on known votes -----------------------------------------------------------------


def known_votes(seed: int = 0) -> list[Vote]:
    """'strong' beats 'weak' 80% of the time; 'mid' is a coin flip against both."""
    rng = random.Random(seed)
    votes = []
    for _ in range(80):
        strong_first = rng.random() < 0.5
        outcome = "tie" if rng.random() < 0.1 else ("strong" if rng.random() < 0.8 else "weak")
        a, b = ("strong", "weak") if strong_first else ("weak", "strong")
        votes.append(Vote(a, b, "tie" if outcome == "tie" else ("a" if outcome == a else "b")))
    for _ in range(40):
        other = rng.choice(["strong", "weak"])
        votes.append(Vote("mid", other, rng.choice("ab")))
    return votes


def test_a_clearly_stronger_model_ranks_first():
    standings = leaderboard(known_votes())
    assert [s.player for s in standings][0] == "strong" and standings[-1].player == "weak"
    strong, weak = standings[0], standings[-1]
    assert strong.ci_low > weak.ci_high  # the arena can tell them apart
    assert 0.7 < win_probability(strong.rating, weak.rating) < 0.9  # close to the true 80%


def test_intervals_contain_the_point_estimate():
    for standing in leaderboard(known_votes(seed=3)):
        assert standing.ci_low <= standing.rating <= standing.ci_high
        assert standing.votes == standing.wins + standing.losses + standing.ties


def test_symmetric_votes_give_equal_scores():
    votes = [Vote("x", "y", "a"), Vote("x", "y", "b"), Vote("y", "x", "tie"), Vote("y", "x", "a"), Vote("x", "y", "a")]
    x, y = leaderboard(votes, rounds=50)
    assert x.rating == pytest.approx(y.rating) == pytest.approx(1000)


def test_ties_count_half():
    # One win and one tie for p against q, versus one win and one loss for r against s...
    half = fit_scores([Vote("p", "q", "a"), Vote("p", "q", "tie")], ["p", "q"], prior=1e-6)
    # ...p's share of wins is 1.5 / 2 = 75%: the fitted win probability says so.
    assert 1 / (1 + pow(2.718281828459045, -(half[0] - half[1]))) == pytest.approx(0.75, abs=1e-3)


def test_scores_stay_finite_when_one_side_won_everything():
    x, y = leaderboard([Vote("x", "y", "a")] * 10, rounds=20)
    assert 1000 < x.rating < 2000 and 0 < y.rating < 1000


# --- battles and votes ---------------------------------------------------------------------------


@pytest.fixture
def two_versions(project, model_store, tiny_model_path, tiny_model_path_b):
    base = register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    round1 = register_copy(project, tiny_model_path_b, name="round 1", store=model_store, parent=base, round_number=1)
    return base, round1


def answered(battle: ArenaBattle) -> ArenaBattle:
    """What the interactive worker does with a queued battle."""
    assert battle.status == ArenaBattle.Status.QUEUED and not battle.answer_a  # nothing on the web process
    assert services.arena_battle_answer(battle_id=battle.pk)
    battle.refresh_from_db()
    return battle


def battle_answered(project, user, text: str, seed: int) -> ArenaBattle:
    return answered(services.arena_battle_start(project=project, user=user, text=text, seed=seed))


@pytest.mark.django_db
def test_a_vote_becomes_a_finished_k2_ranking_by_the_voter(project, two_versions, annotator):
    battle = battle_answered(project, annotator, "台灣第一高峰是那一座？", seed=1)
    assert battle.status == ArenaBattle.Status.DONE
    assert {battle.version_a, battle.version_b} == set(two_versions)
    assert battle.answer_a and battle.answer_b and battle.answer_a != battle.answer_b
    assert battle.generation_a["model_version"] == battle.version_a_id and "seed" in battle.generation_a
    services.arena_vote(battle_id=battle.pk, user=annotator, vote="b")
    battle.refresh_from_db()
    task = battle.task
    assert (task.kind, task.state, task.completions) == (Task.Kind.RANKING, Task.State.COMPLETED, 1)
    a, b = task.candidates.order_by("id")
    assert (a.text, a.model_version, b.text, b.model_version) == (
        battle.answer_a,
        battle.version_a,
        battle.answer_b,
        battle.version_b,
    )
    ranking = Ranking.objects.get(task=task)
    assert ranking.annotator == annotator and ranking.groups == [[b.public_id], [a.public_id]]
    assert Assignment.objects.get(task=task).state == Assignment.State.SUBMITTED
    assert Event.objects.filter(verb="arena.ranking_recorded", payload__arena_battle_id=battle.pk).exists()
    # Nobody is ever offered the arena's task.
    assert leases.task_next_for(annotator=annotator, project=project) is None


@pytest.mark.django_db
@pytest.mark.parametrize(("vote", "tied", "none_acceptable"), [("tie", True, False), ("both_bad", True, True)])
def test_tie_and_both_bad(project, two_versions, annotator, vote, tied, none_acceptable):
    battle = battle_answered(project, annotator, "What is the highest mountain?", seed=2)
    services.arena_vote(battle_id=battle.pk, user=annotator, vote=vote)
    ranking = Ranking.objects.get(task__arena_battle=battle)
    assert (len(ranking.groups) == 1, ranking.none_acceptable) == (tied, none_acceptable)
    assert selectors.arena_votes(project=project)[0].outcome == "tie"


@pytest.mark.django_db
def test_votes_are_once_and_only_by_the_person_who_saw_the_battle(project, two_versions, annotator, annotator2):
    battle = services.arena_battle_start(project=project, user=annotator, text="Hi", seed=3)
    with pytest.raises(Conflict, match="not written yet"):
        services.arena_vote(battle_id=battle.pk, user=annotator, vote="a")  # nothing to vote on yet
    answered(battle)
    assert not services.arena_battle_answer(battle_id=battle.pk)  # a redelivered message does nothing
    with pytest.raises(services.Forbidden):
        services.arena_vote(battle_id=battle.pk, user=annotator2, vote="a")
    with pytest.raises(services.LabelingError):
        services.arena_vote(battle_id=battle.pk, user=annotator, vote="both good")
    services.arena_vote(battle_id=battle.pk, user=annotator, vote="a")
    services.arena_vote(battle_id=battle.pk, user=annotator, vote="a")  # a retried request: same answer
    with pytest.raises(services.Conflict):
        services.arena_vote(battle_id=battle.pk, user=annotator, vote="b")
    assert Ranking.objects.count() == 1


@pytest.mark.django_db
def test_arena_needs_two_versions(project, model_store, tiny_model_path, annotator):
    register_copy(project, tiny_model_path, name="base", store=model_store)
    with pytest.raises(Conflict, match="two policy versions"):
        services.arena_battle_start(project=project, user=annotator, text="Hi")


@pytest.mark.django_db
def test_arena_pages_blind_then_reveal_then_leaderboard(client, project, two_versions, annotator, outsider):
    client.force_login(outsider)
    assert client.get(f"/projects/{project.pk}/arena/").status_code == 403
    client.force_login(annotator)
    response = client.post(f"/projects/{project.pk}/arena/", {"prompt": "<script>alert(1)</script> Which is higher?"})
    battle = ArenaBattle.objects.get()
    assert response.status_code == 302 and response.url == f"/projects/{project.pk}/arena/{battle.pk}/"
    waiting = client.get(response.url).content.decode()
    assert "Waiting for the interactive worker" in waiting and 'name="vote"' not in waiting
    progress = client.get(f"{response.url}progress/").json()
    assert (progress["status"], progress["finished"]) == ("queued", False)
    answered(battle)
    assert client.get(f"{response.url}progress/").json()["finished"] is True
    page = client.get(response.url).content.decode()
    assert 'name="vote"' in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "round 1" not in page  # blind until the vote
    client.post(response.url, {"vote": "a"})
    page = client.get(response.url).content.decode()
    assert battle.version_a.name in page and battle.version_b.name in page
    board = client.get(f"/projects/{project.pk}/arena/leaderboard/").content.decode()
    assert "leaderboard" in board and board.index(battle.version_a.name) < board.index(battle.version_b.name)


@pytest.mark.django_db
def test_leaderboard_ranks_the_version_that_wins_votes(project, two_versions, annotator):
    base, round1 = two_versions
    for i in range(12):
        battle = ArenaBattle.objects.create(
            project=project,
            prompt=labeling_services.prompt_create(project=project, messages=f"q{i}")[0],
            version_a=base if i % 2 else round1,
            version_b=round1 if i % 2 else base,
            answer_a="one",
            answer_b="two",
            created_by=annotator,
            status=ArenaBattle.Status.DONE,
        )
        round1_is_a = battle.version_a == round1
        vote = ("a" if round1_is_a else "b") if i < 10 else "tie"
        services.arena_vote(battle_id=battle.pk, user=annotator, vote=vote)
    rows = selectors.arena_leaderboard(project=project)
    assert [row["version"] for row in rows] == [round1, base]
    assert rows[1]["deployed"] is True
    assert Candidate.objects.filter(model_version=round1).count() == 12


# --- playground ------------------------------------------------------------------------------------


def playground_answer(client, project) -> None:
    """The interactive worker answering the turn the page is waiting for."""
    turn_id = client.session[f"playground-{project.pk}"]["pending"]
    assert PlaygroundTurn.objects.get(pk=turn_id).status == PlaygroundTurn.Status.QUEUED
    assert services.playground_turn_answer(turn_id=turn_id)


@pytest.mark.django_db
def test_playground_keeps_a_multi_turn_conversation(client, project, two_versions, annotator):
    base, _ = two_versions
    client.force_login(annotator)
    url = f"/projects/{project.pk}/playground/"
    assert client.post(url, {"version": base.pk, "message": "Hello **there**"}).status_code == 302
    waiting = client.get(url).content.decode()
    assert "Waiting for the interactive worker" in waiting and "<strong>there</strong>" in waiting
    refused = client.post(url, {"version": base.pk, "message": "Too soon"}, follow=True).content.decode()
    assert "Wait for the model" in refused
    playground_answer(client, project)
    client.get(url)
    client.post(url, {"version": base.pk, "message": "And again"})
    playground_answer(client, project)
    client.get(url)
    state = client.session[f"playground-{project.pk}"]
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "user", "assistant"]
    assert "pending" not in state
    assert [m["content"] for m in state["messages"][::2]] == ["Hello **there**", "And again"]
    client.post(url, {"action": "reset"})
    assert client.session[f"playground-{project.pk}"]["messages"] == []


@pytest.mark.django_db
def test_playground_turn_records_its_sampling(two_versions, annotator):
    turn = services.playground_turn_start(version=two_versions[0], messages="Hi", user=annotator, seed=4)
    assert services.playground_turn_answer(turn_id=turn.pk)
    turn.refresh_from_db()
    assert turn.status == PlaygroundTurn.Status.DONE and turn.finished_at is not None
    assert turn.generation["seed"] == 4 and turn.generation["sampling"]["max_new_tokens"] > 0
    assert turn.generation["finish_reason"] in ("stop", "length")


@pytest.mark.django_db
def test_a_failed_turn_says_why_and_gives_the_message_back(client, project, two_versions, annotator, monkeypatch):
    base, _ = two_versions
    client.force_login(annotator)
    url = f"/projects/{project.pk}/playground/"
    client.post(url, {"version": base.pk, "message": "Will you answer?"})
    monkeypatch.setattr(services, "version_generator", lambda *a, **k: (_ for _ in ()).throw(OSError("disk gone")))
    playground_answer(client, project)
    page = client.get(url).content.decode()
    assert "The model could not answer: OSError: disk gone" in page
    assert ">Will you answer?</textarea>" in page  # nothing typed is lost
    assert client.session[f"playground-{project.pk}"]["messages"] == []


@pytest.mark.django_db
def test_a_request_no_worker_takes_fails_after_the_timeout(client, project, two_versions, annotator, settings):
    from datetime import timedelta

    from django.utils import timezone

    client.force_login(annotator)
    client.post(f"/projects/{project.pk}/playground/", {"version": two_versions[0].pk, "message": "Anyone?"})
    battle = services.arena_battle_start(project=project, user=annotator, text="Anyone there?")
    late = timezone.now() - timedelta(seconds=settings.INTERACTIVE_TIMEOUT_SECONDS + 1)
    PlaygroundTurn.objects.update(created_at=late)
    ArenaBattle.objects.update(created_at=late)
    turn = PlaygroundTurn.objects.get()
    progress = client.get(f"/projects/{project.pk}/playground/turns/{turn.pk}/").json()
    assert progress["finished"] and "No interactive worker took it" in progress["error"]
    page = client.get(f"/projects/{project.pk}/arena/{battle.pk}/").content.decode()
    assert "No interactive worker took it" in page and 'name="vote"' not in page
    assert not services.playground_turn_answer(turn_id=turn.pk)  # a worker that comes back late does nothing
    assert not services.arena_battle_answer(battle_id=battle.pk)


@pytest.mark.django_db
def test_progress_is_only_for_the_person_who_asked(client, project, two_versions, annotator, annotator2):
    turn = services.playground_turn_start(version=two_versions[0], messages="Mine", user=annotator)
    battle = services.arena_battle_start(project=project, user=annotator, text="Mine too")
    client.force_login(annotator2)
    assert client.get(f"/projects/{project.pk}/playground/turns/{turn.pk}/").status_code == 404
    assert client.get(f"/projects/{project.pk}/arena/{battle.pk}/progress/").status_code == 404


@pytest.mark.django_db
def test_each_person_may_start_only_so_many_generations_a_minute(
    client, project, two_versions, annotator, annotator2, settings
):
    """A playground turn and an arena battle hold the interactive worker for seconds: one person
    cannot keep it busy. The limit is per person: a colleague can still play."""
    settings.INTERACTIVE_GENERATION_RATE = "2/min"
    client.force_login(annotator)
    playground = f"/projects/{project.pk}/playground/"
    client.post(playground, {"version": two_versions[0].pk, "message": "Hi"})
    playground_answer(client, project)
    client.get(playground)
    client.post(f"/projects/{project.pk}/arena/", {"prompt": "Which is higher?"})
    refused = client.post(playground, {"version": two_versions[0].pk, "message": "Again"}, follow=True)
    page = refused.content.decode()
    assert "You asked for 2 answers in the last 60 seconds" in page
    assert ">Again</textarea>" in page  # the refused message is given back
    assert len(client.session[f"playground-{project.pk}"]["messages"]) == 2  # the refused turn left no trace
    assert PlaygroundTurn.objects.count() == 1
    with pytest.raises(TooManyRequests):
        services.arena_battle_start(project=project, user=annotator, text="One more?")
    assert ArenaBattle.objects.count() == 1
    services.arena_battle_start(project=project, user=annotator2, text="My turn?")
    assert ArenaBattle.objects.count() == 2
