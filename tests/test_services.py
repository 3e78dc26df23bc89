"""Assignment rules as an annotator meets them: leases, overlap, skips, expiry, idempotent retries."""

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import leases, services, sql, submissions
from labeling.errors import Conflict, Forbidden, LabelingError
from labeling.models import Assignment, Demonstration, Event, Ranking, Task
from tests.factories import add_demonstration_task, add_ranking_task, make_user, new_client_id, service_missing

pytestmark = pytest.mark.django_db


def submit_demo(user, assignment, text="玉山", client_id=None):
    return submissions.demonstration_submit(
        annotator=user, task_id=assignment.task_id, text=text, client_id=client_id or new_client_id()
    )


def test_next_task_returns_the_same_lease_until_it_is_finished(project, annotator):
    add_demonstration_task(project, "one")
    add_demonstration_task(project, "two")
    first = leases.task_next_for(annotator=annotator, project=project)
    again = leases.task_next_for(annotator=annotator, project=project)
    assert first.pk == again.pk
    submit_demo(annotator, first)
    following = leases.task_next_for(annotator=annotator, project=project)
    assert following.task_id != first.task_id


def test_overlap_limits_how_many_annotators_get_a_task(project, annotator, annotator2):
    project.overlap = 1
    project.save()
    add_demonstration_task(project)
    assert leases.task_next_for(annotator=annotator, project=project) is not None
    assert leases.task_next_for(annotator=annotator2, project=project) is None


def test_a_task_is_completed_by_exactly_overlap_annotators(project, annotator, annotator2):
    third = make_user("carol", role="annotator")
    task = add_demonstration_task(project)
    for user in (annotator, annotator2):
        submit_demo(user, leases.task_next_for(annotator=user, project=project))
    task.refresh_from_db()
    assert (task.state, task.completions) == (Task.State.COMPLETED, 2)
    assert leases.task_next_for(annotator=third, project=project) is None


def test_an_annotator_never_gets_a_task_twice(project, annotator):
    add_demonstration_task(project)
    submit_demo(annotator, leases.task_next_for(annotator=annotator, project=project))
    assert leases.task_next_for(annotator=annotator, project=project) is None


def test_a_skipped_task_is_not_served_again_to_that_annotator(project, annotator, annotator2):
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    leases.task_skip(annotator=annotator, task_id=lease.task_id, reason="I don't know the answer")
    assert leases.task_next_for(annotator=annotator, project=project) is None
    assert leases.task_next_for(annotator=annotator2, project=project).task_id == lease.task_id
    assert Event.objects.filter(verb="task.skipped", payload__reason="I don't know the answer").exists()


def test_expired_lease_returns_to_the_pool_and_cannot_be_submitted(project, annotator, annotator2):
    project.overlap = 1
    project.save()
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    taken = leases.task_next_for(annotator=annotator2, project=project)
    assert taken.task_id == lease.task_id
    with pytest.raises(Conflict, match="expired"):
        submit_demo(annotator, lease)
    assert not Demonstration.objects.filter(annotator=annotator).exists()


def test_heartbeat_keeps_the_lease(project, annotator):
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
    renewed = leases.lease_heartbeat(annotator=annotator, task_id=lease.task_id)
    assert renewed.lease_expires_at > timezone.now() + timedelta(seconds=project.lease_seconds - 5)


def test_sweeper_marks_expired_leases(project, annotator):
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases.leases_return_expired() == 1
    lease.refresh_from_db()
    assert lease.state == Assignment.State.EXPIRED
    assert Event.objects.filter(verb="lease.expired").count() == 1


def test_my_expired_lease_comes_back_to_me_with_its_draft(project, annotator):
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    leases.draft_save(annotator=annotator, task_id=lease.task_id, text="half an answer")
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    leases.leases_return_expired()
    again = leases.task_next_for(annotator=annotator, project=project)
    assert (again.pk, again.draft_text, again.state) == (lease.pk, "half an answer", Assignment.State.LEASED)


def test_annotator_never_ranks_their_own_demonstration(project, annotator, annotator2):
    task = add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    demo, _ = submit_demo(annotator, lease, text="my own answer")
    answers = [{"text": "my own answer", "source": "demonstration", "demonstration": demo}] + [
        {"text": f"model answer {i}", "source": "demo"} for i in range(project.k - 1)
    ]
    ranking_task = services.ranking_task_create(prompt=task.prompt, answers=answers)
    assert leases.task_next_for(annotator=annotator, project=project) is None
    assert leases.task_next_for(annotator=annotator2, project=project).task_id in {task.pk, ranking_task.pk}


def test_paused_project_serves_nothing(project, annotator, admin_user):
    add_demonstration_task(project)
    services.project_pause(project=project, paused=True, actor=admin_user)
    with pytest.raises(Conflict, match="paused"):
        leases.task_next_for(annotator=annotator, project=project)


def test_candidates_are_shuffled_per_annotator_and_stable(project, annotator, annotator2):
    project.k = 9
    project.save()
    add_ranking_task(project)
    orders = []
    for user in (annotator, annotator2):
        lease = leases.task_next_for(annotator=user, project=project)
        assert leases.task_next_for(annotator=user, project=project).candidate_order == lease.candidate_order
        orders.append(lease.candidate_order)
    assert sorted(orders[0]) == sorted(orders[1])
    assert orders[0] != orders[1]  # 1 in 362,880 chance of a false failure


def test_submitting_twice_with_one_client_id_stores_one_record(project, annotator):
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    client_id = new_client_id()
    first, created = submit_demo(annotator, lease, client_id=client_id)
    second, created_again = submit_demo(annotator, lease, client_id=client_id)
    assert (created, created_again, first.pk) == (True, False, second.pk)
    assert Demonstration.objects.count() == 1
    assert Event.objects.filter(verb="demonstration.submitted").count() == 1


def test_ranking_with_ties_ratings_and_flags_is_stored_with_provenance(project, annotator):
    task = add_ranking_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    a, b, c = lease.candidate_order
    record, _ = submissions.ranking_submit(
        annotator=annotator,
        task_id=task.pk,
        ranking=[[b], [a, c]],
        ratings={a: 3, b: 7, c: 3},
        flags={c: ["factually_wrong"]},
        none_acceptable=False,
        client_id=new_client_id(),
    )
    assert Ranking.objects.get().groups == [[b], [a, c]]
    event = Event.objects.get(verb="ranking.submitted")
    assert (event.actor, event.task_id, event.payload["shown_order"]) == (annotator, task.pk, [a, b, c])
    assert record.flags == {c: ["factually_wrong"]}


def test_every_lease_and_submission_leaves_its_audit_row(project, annotator):
    """The provenance exports carry: who did what to which task, naming the record (on PostgreSQL
    the writes of a lease and of a submission are single statements; elsewhere several)."""
    demo_task = add_demonstration_task(project)
    ranking_task = add_ranking_task(project)
    stored = {}
    for _ in range(2):
        lease = leases.task_next_for(annotator=annotator, project=project)
        leased = Event.objects.filter(verb="task.leased", task_id=lease.task_id).get()
        assert (leased.actor, leased.project_id, leased.payload) == (annotator, project.pk, {"assignment_id": lease.pk})
        if lease.task_id == demo_task.pk:
            stored["demonstration"], _ = submit_demo(annotator, lease, text="玉山，3,952 公尺。")
        else:
            order = lease.candidate_order
            stored["ranking"], _ = submissions.ranking_submit(
                annotator=annotator, task_id=lease.task_id, ranking=[[i] for i in order], client_id=new_client_id()
            )
    demo_event = Event.objects.get(verb="demonstration.submitted")
    assert (demo_event.actor, demo_event.project_id, demo_event.task_id) == (annotator, project.pk, demo_task.pk)
    assert demo_event.payload == {
        "demonstration_id": stored["demonstration"].pk,
        "client_id": str(stored["demonstration"].client_id),
        "text": "玉山，3,952 公尺。",
    }
    ranking_event = Event.objects.get(verb="ranking.submitted")
    assert (ranking_event.task_id, ranking_event.payload["ranking_id"]) == (ranking_task.pk, stored["ranking"].pk)
    assert ranking_event.payload["groups"] == Ranking.objects.get().groups
    for task in (demo_task, ranking_task):
        task.refresh_from_db()
        assert task.completions == 1 and task.state == Task.State.OPEN  # overlap 2: one more to go
    assert set(Assignment.objects.values_list("state", flat=True)) == {Assignment.State.SUBMITTED}


@pytest.mark.parametrize(
    "ranking, message",
    [
        ([["nope"]], "unknown answer id"),
        ([["A"], ["A"]], "more than once"),
        ([["A"], ["B"]], "leaves out"),
        ("A,B,C", "list of groups"),
        ([[]], "non-empty"),
    ],
)
def test_malformed_rankings_are_refused_with_a_reason(project, annotator, ranking, message):
    add_ranking_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    ids = dict(zip("ABC", lease.candidate_order, strict=True))
    translated = ranking if isinstance(ranking, str) else [[ids.get(x, x) for x in g] for g in ranking]
    with pytest.raises(LabelingError, match=message):
        submissions.ranking_submit(
            annotator=annotator, task_id=lease.task_id, ranking=translated, client_id=new_client_id()
        )
    assert not Ranking.objects.exists()
    lease.refresh_from_db()
    assert lease.state == Assignment.State.LEASED  # a mistake does not cost the annotator the task


def test_submitting_a_task_not_leased_to_you_is_refused(project, annotator, annotator2):
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    with pytest.raises(Forbidden):
        submit_demo(annotator2, lease)


def test_edit_within_the_window_keeps_the_previous_text(project, annotator, settings):
    add_demonstration_task(project)
    demo, _ = submit_demo(annotator, leases.task_next_for(annotator=annotator, project=project), text="v1")
    submissions.demonstration_edit(annotator=annotator, demonstration_id=demo.pk, text="v2")
    demo.refresh_from_db()
    assert demo.text == "v2"
    assert Event.objects.get(verb="demonstration.edited").payload["previous_text"] == "v1"
    settings.SUBMISSION_EDIT_WINDOW_SECONDS = 0
    with pytest.raises(Conflict, match="edited for"):
        submissions.demonstration_edit(annotator=annotator, demonstration_id=demo.pk, text="v3")


def test_nobody_edits_another_annotators_submission(project, annotator, annotator2):
    add_demonstration_task(project)
    demo, _ = submit_demo(annotator, leases.task_next_for(annotator=annotator, project=project))
    with pytest.raises(LabelingError):
        submissions.demonstration_edit(annotator=annotator2, demonstration_id=demo.pk, text="mine now")


def test_prompts_are_deduplicated_and_must_end_with_a_user_turn(project):
    _, created = services.prompt_create(project=project, messages="hello")
    _, again = services.prompt_create(project=project, messages=[{"role": "user", "content": "hello"}])
    assert (created, again) == (True, False)
    with pytest.raises(LabelingError, match="end with a user message"):
        services.prompt_create(
            project=project, messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
        )


def _assignment_rows_read_per_probe(plan: dict) -> int:
    """The most assignment rows one execution of any plan node on labeling_assignment read."""
    most = 0
    if plan.get("Relation Name") == "labeling_assignment" and plan.get("Actual Loops"):
        read = (
            plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
        )
        most = read
    for child in plan.get("Plans", []):
        most = max(most, _assignment_rows_read_per_probe(child))
    return most


@pytest.mark.postgres
def test_choosing_a_task_does_not_slow_down_as_an_annotator_finishes_tasks(project, annotator):
    """A lone annotator in a new project: PostgreSQL has no statistics on assignments yet. Each
    queued task the choice passes must be checked by reading that task's few assignments, not all
    of the annotator's (which made every request slower than the one before: 90 ms after 680 tasks). The table
    must hold a few pages for that plan: for one page, reading it whole is cheapest."""
    from django.db import connection, transaction
    from django.utils import timezone

    if connection.vendor != "postgresql":
        service_missing("PostgreSQL's planner is what this checks (set DATABASE_URL=postgres://…)")
    for i in range(310):
        add_demonstration_task(project, text=f"Which is mountain number {i}?")
    with connection.cursor() as cursor:
        # As in a new installation: empty tables that were never written (TRUNCATE is rolled back
        # with the test; without it, the pages earlier tests left behind make a scan of the whole
        # table look free) and statistics that say they are empty.
        cursor.execute("TRUNCATE labeling_assignment CASCADE")
        cursor.execute("ANALYZE labeling_assignment; ANALYZE labeling_task")
    project.overlap = 3
    project.save()
    for _ in range(300):
        submit_demo(annotator, leases.task_next_for(annotator=annotator, project=project))
    params = sql.queue_params(annotator=annotator, now=timezone.now(), project=project.pk, overlap=3, gold=False)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql.NEXT_TASK, params)
        (plan,) = cursor.fetchone()[0]
    assert plan["Plan"]["Actual Rows"] == 1  # the 301st task: the 300 done ones were passed over
    assert _assignment_rows_read_per_probe(plan["Plan"]) <= 3


def test_a_finished_ranking_is_recorded_as_one_completion_and_never_offered(project, annotator, annotator2):
    import uuid

    prompt, _ = services.prompt_create(project=project, messages="Which answer is kinder?", demonstration_task=False)
    answers = [{"text": "Kind answer", "source": "arena"}, {"text": "Curt answer", "source": "arena"}]
    task = services.ranking_task_create(prompt=prompt, answers=answers, k=2)
    kind, curt = task.candidates.order_by("id").values_list("public_id", flat=True)
    client_id = uuid.uuid4()
    voted_at = timezone.now()

    ranking = submissions.ranking_record_finished(
        task=task,
        annotator=annotator,
        groups=[[kind], [curt]],
        client_id=client_id,
        verb="ranking.submitted",
        actor=annotator,
        leased_at=voted_at - timedelta(minutes=1),
        candidate_order=[kind, curt],
        payload={"arena_battle_id": 7},
        now=voted_at,
    )

    task.refresh_from_db()
    assert (task.state, task.completions, task.completed_at) == (Task.State.COMPLETED, 1, voted_at)
    for person in (annotator, annotator2):
        assert leases.task_next_for(annotator=person, project=project) is None
    assignment = Assignment.objects.get(task=task)
    assert (assignment.annotator, assignment.state, assignment.candidate_order) == (
        annotator,
        Assignment.State.SUBMITTED,
        [kind, curt],
    )
    assert (assignment.leased_at, assignment.lease_expires_at, assignment.finished_at) == (
        voted_at - timedelta(minutes=1),
        voted_at,
        voted_at,
    )
    # As an export reads it: the project's submitted rankings, best answer first.
    texts = dict(task.candidates.values_list("public_id", "text"))
    exported = [
        (row.annotator.username, [[texts[pid] for pid in group] for group in row.groups], row.none_acceptable)
        for row in Ranking.objects.filter(task__project=project, assignment__state=Assignment.State.SUBMITTED)
        .select_related("annotator")
        .order_by("id")
    ]
    assert exported == [("alice", [["Kind answer"], ["Curt answer"]], False)]
    assert (ranking.client_id, ranking.created_at, ranking.updated_at) == (client_id, voted_at, voted_at)
    event = Event.objects.get(verb="ranking.submitted", task=task)
    assert (event.actor, event.project_id) == (annotator, project.pk)
    assert event.payload == {"ranking_id": ranking.pk, "arena_battle_id": 7}
