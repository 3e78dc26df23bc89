"""The playground and the arena. Each view checks the role, calls one service or selector, and
renders.

Who may do what: anyone with a role may chat in the Playground and read the arena's Leaderboard
(a researcher evaluating versions among them). Starting battles and voting is for annotators and
admins: a vote is stored as a finished ranking by the voter, labeling data that goes into
snapshots and the next reward model, and labels come from the people who label (whose work the
project's quality control watches) or from its admins. The navigation shows the same links
(labeling/home.html, training/_model_nav.html).

Neither generates on the web process: a turn or a battle is queued for the interactive worker
(training.arena.interactive), and the page polls its progress URL until the answer is there
(training/waiting.js; a page without script refreshes itself). Each person may start
INTERACTIVE_GENERATION_RATE of them.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext

from labeling.errors import LabelingError
from labeling.markdown import markdown_to_html
from labeling.models import Project
from labeling.roles import any_role_page, is_admin, is_annotator, page_requires
from training.arena import selectors, services
from training.arena.interactive import work_progress
from training.arena.models import ArenaBattle, PlaygroundTurn
from training.registry import selectors as registry_selectors

PLAYGROUND_MAX_TURNS = 20


def may_vote_in_arena(user) -> bool:
    return is_annotator(user) or is_admin(user)


arena_voter_page = page_requires(
    may_vote_in_arena,
    "Arena votes become labels, so only annotators and admins start battles. "
    "Researchers can try every version in the Playground and read the Leaderboard.",
)


def _session_key(project: Project) -> str:
    return f"playground-{project.pk}"


@any_role_page
def playground(request, pk: int):
    """Multi-turn chat with any ready policy version. The conversation lives in the session."""
    project = get_object_or_404(Project, pk=pk)
    versions = list(registry_selectors.policy_versions(project=project))
    key = _session_key(project)
    state = request.session.get(key, {"version": None, "messages": []})
    if request.method == "POST":
        request.session[key] = _playground_post(request, project, versions, state)
        return redirect("playground", pk=pk)
    state, pending, draft = _playground_collect(request, state)
    request.session[key] = state
    deployed = registry_selectors.deployed_policy(project=project)
    selected = state.get("version") or (deployed.pk if deployed else (versions[-1].pk if versions else None))
    turns = [{**m, "html": markdown_to_html(m["content"])} for m in state["messages"]]
    return render(
        request,
        "training/playground.html",
        {
            "project": project,
            "versions": versions,
            "selected": selected,
            "turns": turns,
            "deployed": deployed,
            "max_turns": PLAYGROUND_MAX_TURNS,
            "pending": pending,
            "draft": draft,
        },
    )


def _playground_post(request, project, versions, state) -> dict:
    if request.POST.get("action") == "reset":
        return {"version": state.get("version"), "messages": []}
    if state.get("pending"):
        messages.error(request, gettext("Wait for the model's answer first, or start a new conversation."))
        return state
    by_id = {str(v.pk): v for v in versions}
    version = by_id.get(request.POST.get("version", ""))
    if version is None:
        messages.error(request, gettext("Choose a policy version of this project."))
        return state
    if state.get("version") != version.pk:
        state = {"version": version.pk, "messages": []}  # a new model starts a new conversation
    text = request.POST.get("message", "")
    if not text.strip():
        messages.error(request, gettext("Type a message first."))
        return state
    if len(state["messages"]) >= 2 * PLAYGROUND_MAX_TURNS:
        messages.error(request, gettext("This conversation is long enough; start a new one."))
        return state
    conversation = [*state["messages"], {"role": "user", "content": text}]
    try:
        turn = services.playground_turn_start(version=version, messages=conversation, user=request.user)
    except LabelingError as error:
        messages.error(request, error.message)
        return {**state, "draft": text}
    return {"version": version.pk, "messages": conversation, "pending": turn.pk}


def _playground_collect(request, state) -> tuple[dict, dict | None, str]:
    """Fold a finished turn into the conversation. Returns the state, the progress of a turn still
    being written (or None) and the text to put back in the message box (a refused or failed turn)."""
    state = dict(state)
    draft = state.pop("draft", "")
    turn = PlaygroundTurn.objects.filter(pk=state.get("pending") or 0, created_by=request.user).first()
    if turn is None:
        state.pop("pending", None)
        return state, None, draft
    progress = work_progress(turn)
    if not progress["finished"]:
        return state, progress, draft
    state.pop("pending")  # work_progress has refreshed `turn` if it expired it
    if turn.status == PlaygroundTurn.Status.FAILED:
        messages.error(request, turn.error)
        *earlier, asked = state["messages"]
        return {**state, "messages": earlier}, None, asked["content"]
    reply = turn.reply or gettext("(the model ended its turn without saying anything)")
    cut = turn.generation.get("finish_reason") == "length"
    state["messages"] = [*state["messages"], {"role": "assistant", "content": reply, "cut": cut}]
    return state, None, draft


@any_role_page
def playground_turn_progress(request, pk: int, turn_id: int):
    """JSON for the page that waits: status, what it waits for, the error of a failed turn."""
    turn = PlaygroundTurn.objects.filter(pk=turn_id, project_id=pk, created_by=request.user).first()
    if turn is None:
        raise Http404(gettext("No such playground turn of yours."))
    return JsonResponse(work_progress(turn))


# --- arena ---------------------------------------------------------------------------------------


@arena_voter_page
def arena(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    versions = list(registry_selectors.policy_versions(project=project))
    if request.method == "POST":
        chosen = [v for v in versions if str(v.pk) in request.POST.getlist("versions")]
        if chosen and len(chosen) != 2:
            messages.error(request, gettext("Pick exactly two versions, or none to draw two at random."))
            return redirect("arena", pk=pk)
        try:
            battle = services.arena_battle_start(
                project=project,
                user=request.user,
                text=request.POST.get("prompt", ""),
                versions=tuple(chosen) if chosen else None,
            )
        except LabelingError as error:
            messages.error(request, error.message)
            return redirect("arena", pk=pk)
        return redirect("arena-battle", pk=pk, battle_id=battle.pk)
    return render(
        request,
        "training/arena.html",
        {
            "project": project,
            "versions": versions,
            "counts": selectors.arena_counts(project=project),
        },
    )


@arena_voter_page
def arena_battle(request, pk: int, battle_id: int):
    battle = selectors.arena_battle_for(battle_id=battle_id, user=request.user)
    if battle is None or battle.project_id != pk:
        raise PermissionDenied(gettext("This battle is not yours to see."))
    if request.method == "POST":
        try:
            services.arena_vote(battle_id=battle.pk, user=request.user, vote=request.POST.get("vote", ""))
        except LabelingError as error:
            messages.error(request, error.message)
        return redirect("arena-battle", pk=pk, battle_id=battle.pk)
    progress = work_progress(battle)  # fails, in place, a battle past its deadline
    conversation = [{**m, "html": markdown_to_html(m["content"])} for m in battle.prompt.messages]
    return render(
        request,
        "training/arena_battle.html",
        {
            "project": battle.project,
            "battle": battle,
            "progress": progress,
            "conversation": conversation,
            "answer_a": markdown_to_html(battle.answer_a),
            "answer_b": markdown_to_html(battle.answer_b),
            "votes": ArenaBattle.Vote.choices,
        },
    )


@arena_voter_page
def arena_battle_progress(request, pk: int, battle_id: int):
    """JSON for the battle page while both answers are written."""
    battle = selectors.arena_battle_for(battle_id=battle_id, user=request.user)
    if battle is None or battle.project_id != pk:
        raise Http404(gettext("No such battle of yours."))
    return JsonResponse(work_progress(battle))


@any_role_page
def arena_leaderboard(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    rows = _with_interval_bars(selectors.arena_leaderboard(project=project))
    return render(
        request,
        "training/arena_leaderboard.html",
        {
            "project": project,
            "rows": rows,
            "counts": selectors.arena_counts(project=project),
        },
    )


def _with_interval_bars(rows: list[dict]) -> list[dict]:
    """Positions (in % of the common scale) for drawing each interval with CSS, no script."""
    low = min((r["standing"].ci_low for r in rows), default=0)
    high = max((r["standing"].ci_high for r in rows), default=1)
    span = max(high - low, 1e-9)
    for row in rows:
        s = row["standing"]
        row["bar_left"] = round(100 * (s.ci_low - low) / span, 1)
        row["bar_width"] = max(round(100 * (s.ci_high - s.ci_low) / span, 1), 0.5)
        row["dot"] = round(100 * (s.rating - low) / span, 1)
    return rows
