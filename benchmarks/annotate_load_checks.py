"""The checks of benchmarks/annotate_load.py, run in the database after gunicorn has stopped:
that the load broke nothing (overlap, completions, every accepted submission stored) and that
the run can be measured (no unexpected responses, nobody ran out of tasks)."""


def round_check(round_) -> list[str]:
    """What is wrong in the database (or with the run) after this round; empty when all is well."""
    stats = round_.stats
    return [
        *tasks_check(project_id=round_.project_id, overlap=round_.overlap),
        *submissions_check(project_id=round_.project_id, accepted=stats.accepted),
        *responses_check(stats),
    ]


def tasks_check(*, project_id: int, overlap: int) -> list[str]:
    """No task has more submissions than the overlap, each from a different annotator; its
    completions and state agree with them."""
    from django.db.models import Count, OuterRef, Subquery

    from labeling.models import Demonstration, Ranking, Task

    def count_of(model):
        rows = model.objects.filter(task=OuterRef("pk")).order_by().values("task")
        return Subquery(rows.annotate(n=Count("pk")).values("n"))

    def distinct_of(model):
        rows = model.objects.filter(task=OuterRef("pk")).order_by().values("task")
        return Subquery(rows.annotate(n=Count("annotator", distinct=True)).values("n"))

    tasks = Task.objects.filter(project_id=project_id).annotate(
        demos=count_of(Demonstration),
        ranks=count_of(Ranking),
        demo_people=distinct_of(Demonstration),
        rank_people=distinct_of(Ranking),
    )
    over = wrong_count = wrong_state = shared = 0
    for task in tasks:
        done = (task.demos or 0) + (task.ranks or 0)
        over += done > overlap
        wrong_count += task.completions != done
        wrong_state += (task.state == Task.State.COMPLETED) != (done >= overlap)
        shared += (task.demo_people or 0) + (task.rank_people or 0) != done
    return [
        f"{n} {label}"
        for label, n in [
            ("tasks with more submissions than the overlap", over),
            ("tasks whose completions field disagrees with their submissions", wrong_count),
            ("tasks whose state disagrees with their submissions", wrong_state),
            ("tasks submitted twice by one annotator", shared),
        ]
        if n
    ]


def submissions_check(*, project_id: int, accepted: list[tuple[str, str, int, int]]) -> list[str]:
    """Every submission the client saw accepted (kind, client_id, task, user) is stored as it was
    sent, every submitted assignment has its one submission, and nothing else is stored."""
    from labeling.models import Assignment, Demonstration, Ranking

    problems = []
    submitted = Assignment.objects.filter(task__project_id=project_id, state=Assignment.State.SUBMITTED)
    stored = {}
    for model, kind in [(Demonstration, "demonstration"), (Ranking, "ranking")]:
        for client_id, task_id, annotator_id in model.objects.filter(task__project_id=project_id).values_list(
            "client_id", "task_id", "annotator_id"
        ):
            stored[str(client_id)] = (kind, task_id, annotator_id)
    if submitted.count() != len(stored):
        problems.append(f"{submitted.count()} submitted assignments but {len(stored)} submissions")
    missing = [a for a in accepted if stored.get(a[1]) != (a[0], a[2], a[3])]
    if missing:
        problems.append(f"{len(missing)} accepted submissions missing or different in the database")
    unseen = len(stored.keys() - {a[1] for a in accepted})
    if unseen:
        problems.append(f"{unseen} submissions in the database that the client never saw accepted")
    return problems


def responses_check(stats) -> list[str]:
    """No 5xx or otherwise unexpected response, and no annotator ran out of tasks (a 204) inside
    the timed window, which would make the figures meaningless."""
    problems = []
    server_errors = sum(n for status, n in stats.statuses.items() if status.split()[1].startswith("5"))
    if server_errors:
        problems.append(f"{server_errors} 5xx responses")
    if stats.statuses:
        problems.append("unexpected responses: " + ", ".join(f"{s} ×{n}" for s, n in sorted(stats.statuses.items())))
    dry_early = [t for t in stats.ran_dry if t < stats.window[1]]
    if dry_early:
        problems.append(f"{len(dry_early)} annotators ran out of tasks inside the timed window: raise --tasks")
    return problems
