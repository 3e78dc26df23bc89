"""Agreement between annotators: the statistics on examples computed by hand (ties included), and
what an admin sees of them in the API and on the project page."""

import pytest

from labeling import roles
from labeling.quality.agreement import RankingLabel, agreement_report, pair_counts, rank_positions
from tests.factories import add_ranking_task, api_client, make_user, new_client_id

FLAG_NAMES = ["harmful", "factually_wrong"]


def three_annotators_one_task() -> list[RankingLabel]:
    return [
        RankingLabel(1, 1, [["a"], ["b"], ["c"]], ratings={"a": 7, "b": 4, "c": 1}),
        RankingLabel(1, 2, [["a"], ["c"], ["b"]], ratings={"a": 6, "b": 4, "c": 2}, flags={"c": ["harmful"]}),
        RankingLabel(1, 3, [["a", "b"], ["c"]], ratings={"a": 7, "b": 5, "c": 1}, none_acceptable=True),
        RankingLabel(2, 1, [["x"], ["y"]]),
        RankingLabel(2, 2, [["x"], ["y"]]),
    ]


def test_a_tie_against_an_order_is_a_disagreement_and_two_ties_agree():
    tied, ordered = rank_positions([["a", "b"], ["c"]]), rank_positions([["a"], ["b"], ["c"]])
    counts = pair_counts(tied, ordered)  # ab: tie vs order; ac, bc: same order
    assert (counts.pairs, counts.agree, counts.tied_by_one, counts.tied_by_both) == (3, 2, 1, 0)
    both = pair_counts(tied, tied)
    assert (both.pairs, both.agree, both.tied_by_both, both.ordered) == (3, 3, 1, 2)


def test_pairwise_agreement_matches_the_hand_count():
    # Task 1, annotator pairs (1,2): ab, ac agree, bc not -> 2/3; (1,3): ab tie vs order -> 2/3;
    # (2,3): ab tie vs order, bc opposite -> 1/3. Task 2: 1/1. In all 6 of 10; on pairs neither
    # tied, 6 of 8.
    report = agreement_report(three_annotators_one_task(), flag_names=FLAG_NAMES)["pairwise"]
    assert report["pairs"] == 10 and report["agreement"] == pytest.approx(0.6)
    assert report["ordered_agreement"] == pytest.approx(0.75)
    assert (report["pairs_tied_by_one"], report["pairs_tied_by_both"], report["tasks"]) == (2, 0, 2)
    low, high = report["agreement_ci"]
    assert low <= 0.6 <= high
    # Annotator 1: 2 + 2 of 3 on task 1, 1 of 1 on task 2.
    assert report["annotators"][1]["agreement"] == pytest.approx(5 / 7)
    assert report["annotators"][3] | {"agreement": round(report["annotators"][3]["agreement"], 6)} == {
        "agreement": 0.5,
        "ordered_agreement": 0.75,
        "pairs": 6,
        "pairs_tied_by_both": 0,
        "pairs_tied_by_one": 2,
        "tasks": 1,
    }


def test_a_task_one_annotator_did_counts_for_nothing():
    report = agreement_report([RankingLabel(1, 1, [["a"], ["b"]])], flag_names=FLAG_NAMES)
    assert report["pairwise"]["pairs"] == 0 and report["pairwise"]["agreement"] is None
    assert report["alpha"]["rankings"] is None


def test_krippendorff_alpha_nominal_matches_the_hand_computed_value():
    # "None acceptable" on three tasks by two annotators: (no, no), (yes, yes), (no, yes).
    # Coincidences: o_00 = 2, o_11 = 2, o_01 = o_10 = 1; n = 6, n_0 = n_1 = 3.
    # D_o = 2/6; D_e = 2 * 3 * 3 / (6 * 5) = 0.6; alpha = 1 - (1/3) / 0.6 = 4/9.
    labels = [
        RankingLabel(task, annotator, [["a"], ["b"]], none_acceptable=value)
        for task, values in ((1, (False, False)), (2, (True, True)), (3, (False, True)))
        for annotator, value in zip((1, 2), values, strict=True)
    ]
    report = agreement_report(labels, flag_names=FLAG_NAMES)
    assert report["alpha"]["none_acceptable"] == pytest.approx(4 / 9)
    assert report["none_acceptable_agreement"] == pytest.approx(2 / 3)


def test_alpha_for_rankings_is_one_when_everyone_ranks_alike_and_falls_with_disagreement():
    same = [RankingLabel(t, a, [["x"], ["y"], ["z"]]) for t in (1, 2) for a in (1, 2)]
    assert agreement_report(same, flag_names=FLAG_NAMES)["alpha"]["rankings"] == pytest.approx(1.0)
    mixed = agreement_report(three_annotators_one_task(), flag_names=FLAG_NAMES)["alpha"]
    assert mixed["rankings"] < 1.0 and mixed["ratings"] < 1.0
    assert mixed["ratings"] > mixed["rankings"]  # the ratings of task 1 differ by 1 or 2 points at most


def test_alpha_is_undefined_when_every_label_is_the_same():
    labels = [RankingLabel(1, a, [["x"], ["y"]]) for a in (1, 2)]
    report = agreement_report(labels, flag_names=FLAG_NAMES)
    assert report["alpha"]["flags"] is None and report["alpha"]["none_acceptable"] is None
    assert report["flags_agreement"] == 1.0


def rank_through_api(project, user, order: list[str]):
    client = api_client(user)
    task = client.get(f"/api/v1/tasks/next/?project={project.pk}").json()
    ids = {c["text"]: c["id"] for c in task["candidates"]}
    body = {"ranking": [[ids[text] for text in group] for group in order], "client_id": new_client_id()}
    assert client.post(f"/api/v1/tasks/{task['id']}/ranking/", body, format="json").status_code == 201


@pytest.fixture
def ranked_twice(project, annotator, annotator2):
    """One task, overlap 2: alice and bob agree on one pair of three; carol ranks nothing shared."""
    add_ranking_task(project, answers=["one", "two", "three"])
    rank_through_api(project, annotator, [["three"], ["two"], ["one"]])
    rank_through_api(project, annotator2, [["three"], ["one"], ["two"]])
    return project


def test_the_api_gives_admins_and_researchers_the_agreement(ranked_twice, admin_user, researcher):
    for user in (admin_user, researcher):
        body = api_client(user).get(f"/api/v1/projects/{ranked_twice.pk}/agreement/").json()
        assert body["pairwise"]["pairs"] == 3
        assert body["pairwise"]["agreement"] == pytest.approx(2 / 3)
        assert {row["annotator"] for row in body["pairwise"]["annotators"]} == {"alice", "bob"}
        assert body["alpha"]["rankings"] is not None
        assert len(body["pairwise"]["by_day"]) == 1


def test_the_agreement_follows_an_edited_ranking(ranked_twice, admin_user, annotator2):
    url = f"/api/v1/projects/{ranked_twice.pk}/agreement/"
    assert api_client(admin_user).get(url).json()["pairwise"]["agreement"] == pytest.approx(2 / 3)
    ranking = annotator2.rankings.get()
    ids = {c.text: c.public_id for c in ranking.task.candidates.all()}
    edit = {"ranking": [[ids["three"]], [ids["two"]], [ids["one"]]]}
    assert api_client(annotator2).patch(f"/api/v1/rankings/{ranking.pk}/", edit, format="json").status_code == 200
    assert api_client(admin_user).get(url).json()["pairwise"]["agreement"] == pytest.approx(1.0)


def test_the_project_page_shows_agreement_per_annotator(ranked_twice, admin_user, client):
    client.force_login(admin_user)
    page = client.get(f"/projects/{ranked_twice.pk}/admin/").content.decode()
    assert 'id="agreement-pairwise">0.67<' in page
    assert "alice" in page and "bob" in page and "Krippendorff" in page


def test_the_project_page_says_why_there_is_no_agreement_yet(project, admin_user, client):
    make_user("carol", role=roles.ANNOTATOR)
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/admin/").content.decode()
    assert "No task has been ranked by two annotators yet" in page


# --- reliability and consensus -------------------------------------------------------------------


def simulated_labels(accuracies: dict[int, float], tasks: int, *, seed: int = 0) -> tuple[list, dict]:
    """Annotators who order each pair of 4 answers right with their accuracy; 3 annotators a task."""
    import random

    rng = random.Random(seed)
    labels, truth = [], {}
    for task in range(tasks):
        quality = {f"t{task}a{i}": rng.random() for i in range(4)}
        truth[task] = quality
        for annotator in rng.sample(sorted(accuracies), 3):
            wins = dict.fromkeys(quality, 0.0)
            answers = sorted(quality)
            for i, x in enumerate(answers):
                for y in answers[i + 1 :]:
                    better, worse = (x, y) if quality[x] > quality[y] else (y, x)
                    if rng.random() > accuracies[annotator]:
                        better, worse = worse, better
                    wins[better] += 1
            order = sorted(answers, key=lambda a: (-wins[a], rng.random()))
            labels.append(RankingLabel(task, annotator, [[a] for a in order]))
    return labels, truth


def test_reliability_ranks_careful_annotators_above_careless_and_adversarial_ones():
    from labeling.quality.reliability import consensus_fit

    accuracies = {1: 0.95, 2: 0.9, 3: 0.9, 4: 0.85, 5: 0.6, 6: 0.5, 7: 0.1}
    labels, truth = simulated_labels(accuracies, 120)
    consensus = consensus_fit(labels)
    careful = [consensus.skills[a] for a in (1, 2, 3, 4)]
    assert min(careful) > consensus.skills[5] > consensus.skills[7]
    assert min(careful) > consensus.skills[6] > consensus.skills[7]
    assert consensus.skills[7] < 0.5  # worse than chance: read in reverse

    # The weighted consensus orders more pairs right than a majority of the three votes.
    right_consensus = right_majority = total = 0
    by_task: dict[int, list] = {}
    for label in labels:
        by_task.setdefault(label.task_id, []).append(rank_positions(label.groups))
    for task, quality in truth.items():
        ranks = consensus.tasks[task].ranks
        answers = sorted(quality)
        for i, x in enumerate(answers):
            for y in answers[i + 1 :]:
                total += 1
                x_better = quality[x] > quality[y]
                right_consensus += (ranks[x] < ranks[y]) == x_better
                votes = sum(positions[x] < positions[y] for positions in by_task[task])
                right_majority += (votes >= 2) == x_better
    assert right_consensus > right_majority


def test_consensus_weights_say_how_sure_the_vote_is():
    from labeling.quality.reliability import consensus_fit

    accuracies = {1: 0.95, 2: 0.9, 3: 0.9, 4: 0.85, 5: 0.6, 6: 0.5}
    labels, _ = simulated_labels(accuracies, 80, seed=1)
    consensus = consensus_fit(labels)
    for task in consensus.tasks.values():
        assert task.annotators == 3
        for better, worse, weight in task.pairs:
            assert task.ranks[better] < task.ranks[worse] and 0 < weight <= 1
    weights = [w for task in consensus.tasks.values() for _, _, w in task.pairs]
    assert max(weights) > 0.99 and min(weights) < 0.9  # unanimous careful votes against split ones


def test_an_annotator_sees_their_own_agreement_and_not_the_others_names(ranked_twice, annotator, client):
    body = api_client(annotator).get("/api/v1/me/progress/").json()
    (mine,) = body["agreement"]
    assert mine["agreement"] == pytest.approx(2 / 3) and mine["pairs"] == 3 and mine["tasks"] == 1
    assert mine["project_agreement"] == pytest.approx(2 / 3)
    client.force_login(annotator)
    page = client.get("/me/").content.decode()
    assert 'id="my-agreement"' in page and "0.67" in page
    assert "bob" not in page
