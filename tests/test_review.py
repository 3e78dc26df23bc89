"""Quality control of human labels, part two: peer review of demonstrations (accept, edit with the
diff kept, reject with a reason; decided by the project's number of reviews and acceptance
share), adaptive overlap and adjudication of rankings whose annotators disagree, and what each
does to the snapshots models train on."""

import pytest
from datasets import load_dataset

from labeling import leases, roles, submissions
from labeling.models import Adjudication, Demonstration, Event, Review, Task
from labeling.quality import adjudication, review
from tests.factories import add_demonstration_task, add_ranking_task, api_client, make_user, new_client_id
from training.datasets.services import snapshot_build, snapshot_create, snapshot_file

pytestmark = pytest.mark.django_db

ORIGINAL = "Yushan is 3,952 m tall. It is in Taiwan."
EDITED = "Yushan is 3,952 m tall. It is the highest peak in Taiwan."


@pytest.fixture
def reviewers(reviewer):
    return [reviewer, *(make_user(name, role=roles.REVIEWER) for name in ("remy", "rene"))]


@pytest.fixture
def reviewing(project):
    """Three reviews at 0.6, as Open-Assistant; overlap 1, so each prompt has one answer to review."""
    project.reviews_required, project.review_accept_share, project.overlap = 3, 0.6, 1
    project.save()
    return project


@pytest.fixture(autouse=True)
def snapshot_store(settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def demonstrate(project, annotator, text=ORIGINAL, prompt="How tall is Yushan?") -> Demonstration:
    add_demonstration_task(project, prompt)
    lease = leases.task_next_for(annotator=annotator, project=project)
    demonstration, _ = submissions.demonstration_submit(
        annotator=annotator, task_id=lease.task_id, text=text, client_id=new_client_id()
    )
    return demonstration


def review_by(reviewer, demonstration, verdict, **fields) -> Review:
    record, created = review.review_submit(
        reviewer=reviewer, demonstration_id=demonstration.pk, verdict=verdict, client_id=new_client_id(), **fields
    )
    assert created
    return record


def post_review(reviewer, demonstration_id, **body):
    body.setdefault("client_id", new_client_id())
    return api_client(reviewer).post(f"/api/v1/demonstrations/{demonstration_id}/reviews/", body, format="json")


def build(project, kind):
    snapshot = snapshot_create(project=project, kind=kind, format="jsonl")
    snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == "ready", snapshot.error
    path, _ = snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)
    return snapshot, list(load_dataset("json", data_files=str(path), split="train"))


# --- review states ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "state"),
    [
        (["accept", "accept", "reject"], Demonstration.ReviewState.ACCEPTED),  # 2/3 >= 0.6
        (["reject", "reject", "accept"], Demonstration.ReviewState.REJECTED),  # 1/3 < 0.6
        (["edit", "reject", "accept"], Demonstration.ReviewState.ACCEPTED),  # an edit accepts
    ],
)
def test_three_reviews_at_0_6_decide_the_demonstration(reviewing, annotator, reviewers, verdicts, state):
    demonstration = demonstrate(reviewing, annotator)
    for index, (reviewer, verdict) in enumerate(zip(reviewers, verdicts, strict=True)):
        fields = {"text": EDITED} if verdict == "edit" else {"reason": "wrong"} if verdict == "reject" else {}
        review_by(reviewer, demonstration, verdict, **fields)
        demonstration.refresh_from_db()
        expected = state if index == 2 else Demonstration.ReviewState.PENDING  # pending until the third
        assert demonstration.review_state == expected
    assert Event.objects.filter(verb="demonstration.reviewed", task=demonstration.task).count() == 3


def test_an_edit_keeps_the_original_and_its_diff_and_sets_the_reviewed_text(reviewing, annotator, reviewers):
    demonstration = demonstrate(reviewing, annotator)
    response = post_review(reviewers[0], demonstration.pk, verdict="edit", text=EDITED, reason="more precise")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["verdict"] == "edit" and body["review_state"] == "pending"
    assert "-Yushan is 3,952 m tall. It is in Taiwan." in body["diff"]
    assert "+Yushan is 3,952 m tall. It is the highest peak in Taiwan." in body["diff"]
    assert body["diff_segments"] == [
        {"op": "equal", "text": "Yushan is 3,952 m tall. It is "},
        {"op": "insert", "text": "the highest peak "},
        {"op": "equal", "text": "in Taiwan."},
    ]

    review_by(reviewers[1], demonstration, "accept")
    review_by(reviewers[2], demonstration, "reject", reason="not needed")
    demonstration.refresh_from_db()
    assert demonstration.review_state == Demonstration.ReviewState.ACCEPTED
    assert (demonstration.text, demonstration.reviewed_text) == (ORIGINAL, EDITED)  # both kept
    event = Event.objects.get(verb="demonstration.reviewed", payload__verdict="edit")
    assert (event.payload["original_text"], event.payload["text"]) == (ORIGINAL, EDITED)


def test_the_word_diff_splits_chinese_by_character():
    assert review.text_diff("玉山高3952公尺。", "玉山高3,952公尺，是台灣第一高峰。") == [
        {"op": "equal", "text": "玉山高"},
        {"op": "delete", "text": "3952"},
        {"op": "insert", "text": "3,952"},
        {"op": "equal", "text": "公尺"},
        {"op": "insert", "text": "，是台灣第一高峰"},
        {"op": "equal", "text": "。"},
    ]


def test_the_queue_serves_the_oldest_answer_that_is_not_mine_nor_reviewed_by_me(
    reviewing, annotator, annotator2, reviewers
):
    first = demonstrate(reviewing, annotator, prompt="one")
    second = demonstrate(reviewing, annotator2, prompt="two")
    rosa = reviewers[0]
    assert review.review_next(reviewer=rosa, project=reviewing) == first
    review_by(rosa, first, "accept")
    assert review.review_next(reviewer=rosa, project=reviewing) == second
    roles.role_grant(user=annotator, role=roles.REVIEWER)  # an annotator who also reviews
    assert review.review_next(reviewer=annotator, project=reviewing) == second  # never their own
    review_by(rosa, second, "accept")
    assert review.review_next(reviewer=rosa, project=reviewing) is None

    response = api_client(reviewers[1]).get(f"/api/v1/reviews/next/?project={reviewing.pk}&render=html")
    assert response.status_code == 200
    body = response.json()
    assert (body["demonstration"], body["text"], body["reviews"], body["reviews_required"]) == (
        first.pk,
        ORIGINAL,
        1,
        3,
    )
    assert body["messages"][-1]["content"] == "one" and "html" in body["messages"][-1]
    assert body["gold"] is False and body["reference"] is None
    assert api_client(rosa).get(f"/api/v1/reviews/next/?project={reviewing.pk}").status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"verdict": "maybe"}, "verdict"),
        ({"verdict": "edit"}, "text"),
        ({"verdict": "edit", "text": "   "}, "text"),
        ({"verdict": "edit", "text": "short answer\n"}, "text"),  # unchanged but for a newline
        ({"verdict": "edit", "text": "x" * 21}, "text"),  # over DEMONSTRATION_MAX_CHARS (20 here)
        ({"verdict": "reject"}, "reason"),
        ({"verdict": "reject", "reason": "  "}, "reason"),
    ],
)
def test_a_bad_review_is_a_400_naming_the_field(reviewing, annotator, reviewers, settings, body, field):
    settings.DEMONSTRATION_MAX_CHARS = 20
    demonstration = demonstrate(reviewing, annotator, text="short answer")
    response = post_review(reviewers[0], demonstration.pk, **body)
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"], response.json()
    assert not Review.objects.exists()


def test_own_answers_second_reviews_and_decided_answers_are_refused(reviewing, annotator, reviewers):
    demonstration = demonstrate(reviewing, annotator)
    roles.role_grant(user=annotator, role=roles.REVIEWER)
    own = post_review(annotator, demonstration.pk, verdict="accept")
    assert own.status_code == 403 and "demonstration" in own.json()["errors"]
    assert post_review(reviewers[0], demonstration.pk, verdict="accept").status_code == 201
    again = post_review(reviewers[0], demonstration.pk, verdict="reject", reason="changed my mind")
    assert again.status_code == 409 and "already reviewed" in again.json()["detail"]
    assert post_review(reviewers[0], 999999, verdict="accept").status_code == 404

    reviewing.reviews_required = 1
    reviewing.save()
    other = demonstrate(reviewing, make_user("carol", role=roles.ANNOTATOR), prompt="other")
    review_by(reviewers[1], other, "accept")
    late = post_review(reviewers[2], other.pk, verdict="accept")
    assert late.status_code == 409 and "already accepted" in late.json()["detail"]


def test_an_answer_a_reviewer_judged_can_no_longer_be_edited_by_its_annotator(reviewing, annotator, reviewers):
    demonstration = demonstrate(reviewing, annotator)
    edit = f"/api/v1/demonstrations/{demonstration.pk}/"
    assert api_client(annotator).patch(edit, {"text": "first fix"}, format="json").status_code == 200
    review_by(reviewers[0], demonstration, "accept")
    late = api_client(annotator).patch(edit, {"text": "second fix"}, format="json")
    assert late.status_code == 409 and "already reviewed" in late.json()["detail"]
    demonstration.refresh_from_db()
    assert demonstration.text == "first fix"


def test_a_retried_review_is_stored_once(reviewing, annotator, reviewers):
    demonstration = demonstrate(reviewing, annotator)
    body = {"verdict": "reject", "reason": "wrong height", "client_id": new_client_id()}
    first = post_review(reviewers[0], demonstration.pk, **body)
    retry = post_review(reviewers[0], demonstration.pk, **body)
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry["Idempotent-Replayed"] == "true" and retry.json()["id"] == first.json()["id"]
    assert Review.objects.count() == 1
    elsewhere = post_review(reviewers[0], demonstrate(reviewing, annotator, prompt="b").pk, **body)
    assert elsewhere.status_code == 409 and "client_id" in elsewhere.json()["errors"]


def test_with_no_reviews_required_only_gold_answers_are_reviewed_and_one_review_decides(
    project, annotator, reviewers, admin_user, monkeypatch
):
    from labeling.quality.gold import gold_mark

    assert project.reviews_required == 0
    plain = demonstrate(project, annotator, prompt="plain")
    assert api_client(reviewers[0]).get(f"/api/v1/reviews/next/?project={project.pk}").status_code == 204
    refused = post_review(reviewers[0], plain.pk, verdict="accept")
    assert refused.status_code == 409 and "does not ask for reviews" in refused.json()["detail"]

    checked = demonstrate(project, annotator, prompt="gold")
    gold_mark(task=checked.task, text="Yushan: 3,952 m, Taiwan's highest peak.", actor=admin_user)
    body = api_client(reviewers[0]).get(f"/api/v1/reviews/next/?project={project.pk}").json()
    assert (body["demonstration"], body["gold"]) == (checked.pk, True)
    assert body["reference"] == "Yushan: 3,952 m, Taiwan's highest peak." and body["reviews_required"] == 1

    scored = []
    monkeypatch.setattr(review, "gold_check", lambda **kwargs: scored.append(kwargs))
    review_by(reviewers[0], checked, "reject", reason="the height is missing")
    checked.refresh_from_db()
    assert checked.review_state == Demonstration.ReviewState.REJECTED
    assert scored == [{"project": project, "annotator": checked.annotator}]


# --- what reviews do to SFT snapshots -----------------------------------------------------------


def test_sft_snapshots_leave_out_rejected_answers_and_train_on_edits(reviewing, annotator, reviewers):
    reviewing.reviews_required = 1
    reviewing.save()
    rejected = demonstrate(reviewing, annotator, text="K2.", prompt="Highest in Taiwan?")
    edited = demonstrate(reviewing, annotator, prompt="How tall is Yushan?")
    unreviewed = demonstrate(reviewing, annotator, text="pending", prompt="Third?")
    review_by(reviewers[0], rejected, "reject", reason="wrong mountain")
    review_by(reviewers[0], edited, "edit", text=EDITED)
    _, rows = build(reviewing, "sft")
    answers = [row["messages"][-1]["content"] for row in rows]
    assert answers == [EDITED]  # not the rejected one, nor the one still waiting for review
    assert unreviewed.pk and "K2." not in answers

    reviewing.reviews_required = 0  # review off: the waiting one trains, the rejected one still not
    reviewing.save()
    _, rows = build(reviewing, "sft")
    assert sorted(row["messages"][-1]["content"] for row in rows) == sorted([EDITED, "pending"])


# --- adaptive overlap and adjudication ----------------------------------------------------------


def rank(project, user, task, order: list[str]):
    lease = leases.task_next_for(annotator=user, project=project)
    assert lease is not None and lease.task_id == task.pk
    ids = {c.text: c.public_id for c in task.candidates.all()}
    submissions.ranking_submit(
        annotator=user, task_id=task.pk, ranking=[[ids[text]] for text in order], client_id=new_client_id()
    )


def disagreeing_task(project, annotator, annotator2) -> Task:
    """Alice and Bob rank the same three answers in opposite orders: agreement 0."""
    task = add_ranking_task(project, "Which is highest?", answers=["Yushan", "Xueshan", "Hehuan"])
    rank(project, annotator, task, ["Yushan", "Xueshan", "Hehuan"])
    rank(project, annotator2, task, ["Hehuan", "Xueshan", "Yushan"])
    task.refresh_from_db()
    return task


def test_disagreement_asks_for_one_more_annotator_with_adaptive_overlap(project, annotator, annotator2):
    project.adaptive_overlap = 1
    project.save()
    task = disagreeing_task(project, annotator, annotator2)
    assert (task.state, task.completions, task.extra_overlap) == (Task.State.OPEN, 2, 1)
    raised = Event.objects.get(verb="task.overlap_raised", task=task)
    assert raised.payload["agreement"] == 0.0 and raised.payload["extra_overlap"] == 1

    carol = make_user("carol", role=roles.ANNOTATOR)
    rank(project, carol, task, ["Yushan", "Xueshan", "Hehuan"])  # a third annotator gets it
    task.refresh_from_db()
    # Agreement 3 of 9 pairs: still low, and no more annotators to ask for: adjudication.
    assert (task.state, task.completions, task.extra_overlap) == (Task.State.COMPLETED, 3, 1)
    assert adjudication.adjudication_queue(project=project)["tasks"][0]["task"] == task.pk


def test_the_check_costs_no_query_unless_a_ranking_completes_a_shared_task(project, django_assert_num_queries):
    task = Task.objects.select_related("project").get(pk=add_ranking_task(project).pk)
    groups = [[c.public_id] for c in task.candidates.all()]
    for overlap in (1, 2):  # overlap 1: never shared; overlap 2: the first of two rankings
        task.project.overlap = overlap
        with django_assert_num_queries(0):
            adjudication.ranking_completion_check(task=task, annotator=None, groups=groups)


def test_without_adaptive_overlap_a_disagreement_goes_to_adjudication(
    project, annotator, annotator2, reviewers, researcher
):
    task = disagreeing_task(project, annotator, annotator2)
    agreeing = add_ranking_task(project, "Which is lowest?", answers=["Hehuan", "Xueshan", "Yushan"])
    rank(project, annotator, agreeing, ["Hehuan", "Xueshan", "Yushan"])
    rank(project, annotator2, agreeing, ["Hehuan", "Xueshan", "Yushan"])
    assert task.state == Task.State.COMPLETED and task.extra_overlap == 0
    assert Event.objects.filter(verb="task.adjudication_needed", task=task).exists()

    response = api_client(reviewers[0]).get(f"/api/v1/projects/{project.pk}/adjudications/")
    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["threshold"]) == (1, 0.5)
    (item,) = body["tasks"]
    assert item["task"] == task.pk and item["agreement"] == 0.0
    assert [a["text"] for a in item["answers"]] == ["Yushan", "Xueshan", "Hehuan"]
    assert [r["order"] for r in item["rankings"]] == ["A › B › C", "C › B › A"]
    assert {r["annotator"] for r in item["rankings"]} == {"Annotator 1", "Annotator 2"}  # no names
    assert "alice" not in str(body)
    assert api_client(researcher).get(f"/api/v1/projects/{project.pk}/adjudications/").status_code == 403


def test_an_adjudication_is_checked_stored_once_and_empties_the_queue(project, annotator, annotator2, reviewers):
    task = disagreeing_task(project, annotator, annotator2)
    ids = {c.text: c.public_id for c in task.candidates.all()}
    url = f"/api/v1/tasks/{task.pk}/adjudication/"
    rosa = api_client(reviewers[0])
    bad = rosa.post(url, {"ranking": [[ids["Yushan"]]], "client_id": new_client_id()}, format="json")
    assert bad.status_code == 400 and "ranking" in bad.json()["errors"]  # leaves answers out

    final = [[ids["Yushan"]], [ids["Xueshan"], ids["Hehuan"]]]
    body = {"ranking": final, "note": "Yushan is highest; the others tie", "client_id": new_client_id()}
    first, retry = rosa.post(url, body, format="json"), rosa.post(url, body, format="json")
    assert (first.status_code, retry.status_code) == (201, 201), first.json()
    assert retry["Idempotent-Replayed"] == "true" and first.json()["ranking"] == final
    assert Adjudication.objects.get(task=task).adjudicator == reviewers[0]
    again = api_client(reviewers[1]).post(url, {**body, "client_id": new_client_id()}, format="json")
    assert again.status_code == 409
    assert adjudication.adjudication_queue(project=project)["count"] == 0

    roles.role_grant(user=annotator, role=roles.REVIEWER)
    other = disagreeing_task_two(project, annotator, annotator2)
    party = api_client(annotator).post(
        f"/api/v1/tasks/{other.pk}/adjudication/", {**body, "client_id": new_client_id()}, format="json"
    )
    assert party.status_code == 403  # alice ranked it: she does not judge her own disagreement
    assert adjudication.adjudication_queue(project=project, adjudicator=annotator)["count"] == 0


def disagreeing_task_two(project, annotator, annotator2) -> Task:
    task = add_ranking_task(project, "Which is oldest?", answers=["one", "two", "three"])
    rank(project, annotator, task, ["one", "two", "three"])
    rank(project, annotator2, task, ["three", "two", "one"])
    return task


def test_an_adjudication_replaces_the_consensus_in_a_consensus_snapshot(project, annotator, annotator2, reviewers):
    task = disagreeing_task(project, annotator, annotator2)
    ids = {c.text: c.public_id for c in task.candidates.all()}
    adjudication.adjudication_submit(
        adjudicator=reviewers[0],
        task_id=task.pk,
        ranking=[[ids["Yushan"]], [ids["Xueshan"]], [ids["Hehuan"]]],
        client_id=new_client_id(),
    )
    snapshot, rows = build(project, "consensus")
    (row,) = rows
    assert [c[0]["content"] for c in row["completions"]] == ["Yushan", "Xueshan", "Hehuan"]
    assert row["ranks"] == [1, 2, 3] and row["annotators"] == 2
    assert {(p["better"], p["worse"], p["weight"]) for p in row["pairs"]} == {(0, 1, 1.0), (0, 2, 1.0), (1, 2, 1.0)}
    card = snapshot_file(snapshot=snapshot, name="README.md")[0].read_text()
    assert "Adjudication" in card and "weight 1" in card


def test_an_adjudication_decides_which_pairs_count_in_weighted_rankings(project, annotator, annotator2, reviewers):
    """Rounds read weighted rankings by default: each annotator's pairs of an adjudicated task count
    where they agree with the adjudicator, and not at all where they do not."""
    task = disagreeing_task(project, annotator, annotator2)
    ids = {c.text: c.public_id for c in task.candidates.all()}
    adjudication.adjudication_submit(
        adjudicator=reviewers[0],
        task_id=task.pk,
        ranking=[[ids["Yushan"]], [ids["Xueshan"]], [ids["Hehuan"]]],
        client_id=new_client_id(),
    )
    snapshot = snapshot_create(project=project, kind="ranking", format="jsonl", filters={"weighted": True})
    snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    path, _ = snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)
    rows = list(load_dataset("json", data_files=str(path), split="train"))
    # Alice ranked as the adjudicator did: all three pairs at weight 1. Bob ranked the reverse:
    # none of his pairs counts, so his row is left out.
    (row,) = rows
    assert [c[0]["content"] for c in row["completions"]] == ["Yushan", "Xueshan", "Hehuan"]
    assert {(p["better"], p["worse"], p["weight"]) for p in row["pairs"]} == {(0, 1, 1.0), (0, 2, 1.0), (1, 2, 1.0)}


# --- pages --------------------------------------------------------------------------------------


def test_reviewers_find_the_review_and_adjudication_pages(client, project, reviewers, annotator, annotator2):
    disagreeing_task(project, annotator, annotator2)
    client.force_login(reviewers[0])
    home = client.get("/").content.decode()
    assert f"/projects/{project.pk}/review/" in home and f"/projects/{project.pk}/adjudicate/" in home
    assert "<strong>1</strong> to adjudicate" in home
    assert client.get(f"/projects/{project.pk}/review/").status_code == 200
    page = client.get(f"/projects/{project.pk}/adjudicate/").content.decode()
    assert "Which is highest?" in page and "A › B › C" in page and "C › B › A" in page
    client.force_login(annotator)
    assert client.get(f"/projects/{project.pk}/review/").status_code == 403
    assert client.get(f"/projects/{project.pk}/adjudicate/").status_code == 403


def test_the_project_page_counts_reviews_and_the_adjudication_queue(
    client, reviewing, annotator, annotator2, reviewers, admin_user
):
    demonstration = demonstrate(reviewing, annotator)
    for reviewer in reviewers:
        review_by(reviewer, demonstration, "reject", reason="no")
    demonstrate(reviewing, annotator2, prompt="How tall is Xueshan?")
    reviewing.overlap = 2
    reviewing.save()
    disagreeing_task(reviewing, annotator, annotator2)
    client.force_login(admin_user)
    page = client.get(f"/projects/{reviewing.pk}/admin/").content.decode()
    assert 'id="review"' in page
    assert 'id="review-pending">1<' in page and 'id="review-rejected">1<' in page
    assert 'id="adjudication-queue">1<' in page
