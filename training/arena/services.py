"""Writes for the playground and the arena: a version's next chat turn, a blind battle between two
versions, and its vote, which becomes labeling data (a finished K=2 ranking by the voter).

Turns and battles are queued here and answered by the interactive worker (training.arena.interactive).
"""

import random
import uuid
from dataclasses import replace

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling import services as labeling_services
from labeling import submissions, validation
from labeling.errors import Conflict, Forbidden, LabelingError, NotFound
from labeling.events import event_record
from labeling.models import Project, Prompt, Task
from training.arena.interactive import interactive_generation_allow, servable, work_run
from training.arena.models import ArenaBattle, PlaygroundTurn
from training.ml.generation import Sample, SamplingParams
from training.registry import selectors as registry_selectors
from training.registry.generation import version_generator
from training.registry.models import ModelVersion
from training.registry.services import model_version_available
from worker.queue import enqueue

ARENA_NAMESPACE = uuid.UUID("0b7f5c8e-3d2a-4f61-9c0e-5e2b7a1d9f43")
ARENA_RANKING_VERB = "arena.ranking_recorded"


def _chat_params(seed: int | None = None, max_new_tokens: int | None = None) -> SamplingParams:
    return SamplingParams(
        temperature=0.7,
        top_p=0.9,
        max_new_tokens=max_new_tokens or settings.PLAYGROUND_MAX_NEW_TOKENS,
        repetition_penalty=1.1,
        seed=random.randrange(2**31) if seed is None else seed,
    )


def playground_turn_start(*, version: ModelVersion, messages, user, seed: int | None = None) -> PlaygroundTurn:
    """Queue the version's next assistant turn for a conversation ending with a user message.

    The interactive worker answers it (playground_turn_answer); the page polls the turn.
    """
    messages = validation.messages_clean(messages)
    servable(version)
    interactive_generation_allow(user)
    with transaction.atomic():
        turn = PlaygroundTurn.objects.create(
            project_id=version.project_id,
            version=version,
            created_by=user,
            messages=messages,
            seed=random.randrange(2**31) if seed is None else seed,
        )
        enqueue("worker.tasks.interactive_playground_turn", turn.pk)
    return turn


def playground_turn_answer(*, turn_id: int) -> bool:
    """The interactive worker's side of a playground turn. The model stays loaded for the next."""

    def answer(turn: PlaygroundTurn) -> dict:
        params = _chat_params(turn.seed)
        sample = version_generator(turn.version, cpu_threads=settings.INTERACTIVE_CPU_THREADS).generate(
            [turn.messages], params, seed=params.seed
        )[0]
        generation = {
            "model_version": turn.version_id,
            "sampling": params.as_dict(),
            "seed": sample.seed,
            "finish_reason": sample.finish_reason,
            "new_tokens": sample.new_tokens,
        }
        return {"reply": sample.text, "generation": generation}

    return work_run(PlaygroundTurn, turn_id, answer)


def arena_battle_start(
    *,
    project: Project,
    user,
    text: str | None = None,
    prompt: Prompt | None = None,
    versions: tuple[ModelVersion, ModelVersion] | None = None,
    seed: int | None = None,
) -> ArenaBattle:
    """A prompt (typed, given, or drawn from the project) answered by two versions, in random order."""
    rng = random.Random(seed)
    if versions is None:
        candidates = [v for v in registry_selectors.policy_versions(project=project) if model_version_available(v)]
        if len(candidates) < 2:
            raise Conflict(gettext("The arena needs two policy versions of this project with their files present."))
        versions = tuple(rng.sample(candidates, 2))
    first, second = versions
    if first.pk == second.pk or {first.project_id, second.project_id} != {project.pk}:
        raise LabelingError(gettext("Pick two different policy versions of this project."), field="versions")
    for version in versions:
        servable(version)
    interactive_generation_allow(user)
    if prompt is None and text is not None and text.strip():
        prompt, _ = labeling_services.prompt_create(
            project=project, messages=text, source="arena", actor=user, demonstration_task=False
        )
    elif prompt is None:
        prompt = Prompt.objects.filter(project=project).order_by("?").first()
        if prompt is None:
            raise Conflict(gettext("This project has no prompts yet; type one."))
    version_a, version_b = (first, second) if rng.random() < 0.5 else (second, first)
    with transaction.atomic():
        battle = ArenaBattle.objects.create(
            project=project,
            prompt=prompt,
            version_a=version_a,
            version_b=version_b,
            created_by=user,
            seed=rng.randrange(2**31),
        )
        event_record(
            actor=user,
            verb="arena.battle_started",
            project=project,
            payload={"battle_id": battle.pk, "version_a": version_a.pk, "version_b": version_b.pk},
        )
        enqueue("worker.tasks.interactive_arena_battle", battle.pk)
    return battle


def arena_battle_answer(*, battle_id: int) -> bool:
    """The interactive worker's side of a battle: both versions answer the prompt."""

    def answer(battle: ArenaBattle) -> dict:
        # Same sampling parameters, different random streams: two versions that barely differ (a
        # short round) should not give the same text just because they drew the same numbers.
        params_a = _chat_params(battle.seed)
        params_b = replace(params_a, seed=params_a.seed + 1)
        answer_a = _arena_answer(battle.version_a, battle.prompt, params_a, avoid=None)
        answer_b = _arena_answer(battle.version_b, battle.prompt, params_b, avoid=answer_a.text)
        return {
            "answer_a": answer_a.text,
            "answer_b": answer_b.text,
            "generation_a": _generation_record(battle.version_a, params_a, answer_a),
            "generation_b": _generation_record(battle.version_b, params_b, answer_b),
        }

    return work_run(ArenaBattle, battle_id, answer)


def _arena_answer(version: ModelVersion, prompt: Prompt, params: SamplingParams, *, avoid: str | None) -> Sample:
    """One answer; drawn again (twice at most) when empty or identical to the other side's."""
    generator = version_generator(version, cpu_threads=settings.INTERACTIVE_CPU_THREADS)
    for attempt in range(3):
        sample = generator.generate([prompt.messages], params, seed=params.seed + attempt)[0]
        sample.attempt = attempt
        if sample.text and sample.text != avoid:
            break
    return sample


def _generation_record(version: ModelVersion, params: SamplingParams, sample: Sample) -> dict:
    return {
        "model_version": version.pk,
        "sampling": params.as_dict(),
        "seed": sample.seed,
        "attempt": sample.attempt,
        "finish_reason": sample.finish_reason,
        "new_tokens": sample.new_tokens,
        "arena": True,
    }


def arena_vote(*, battle_id: int, user, vote: str) -> ArenaBattle:
    """Store the vote and turn it into labeling data: a finished K=2 ranking by the voter.

    A or B: two groups, winner first. Tie: one group of both. Both bad: a tie with
    none_acceptable set. Voting twice with the same choice answers as the first time.
    """
    if vote not in ArenaBattle.Vote.values:
        raise LabelingError(
            gettext("vote must be one of %(votes)s.") % {"votes": ", ".join(ArenaBattle.Vote.values)}, field="vote"
        )
    with transaction.atomic():
        battle = (
            ArenaBattle.objects.select_for_update().select_related("prompt", "project").filter(pk=battle_id).first()
        )
        if battle is None:
            raise NotFound(gettext("There is no arena battle %(battle_id)s.") % {"battle_id": battle_id})
        if battle.created_by_id != user.pk:
            raise Forbidden(gettext("Only the person who started this battle can vote on it."))
        if battle.vote:
            if battle.vote == vote:
                return battle
            raise Conflict(gettext("You already voted on this battle."))
        if battle.status != ArenaBattle.Status.DONE:
            raise Conflict(gettext("Both answers are not written yet; vote once they are shown."))
        now = timezone.now()
        battle.vote, battle.voted_at = vote, now
        if battle.answer_a != battle.answer_b and battle.answer_a.strip() and battle.answer_b.strip():
            battle.task = _arena_ranking_create(battle=battle, user=user, vote=vote, now=now)
        battle.save(update_fields=["vote", "voted_at", "task"])
        event_record(
            actor=user,
            verb="arena.voted",
            project=battle.project,
            task=battle.task,
            payload={
                "battle_id": battle.pk,
                "vote": vote,
                "version_a": battle.version_a_id,
                "version_b": battle.version_b_id,
            },
        )
    return battle


def _arena_ranking_create(*, battle: ArenaBattle, user, vote: str, now) -> Task:
    answers = [
        {
            "text": battle.answer_a,
            "source": f"arena:model_version:{battle.version_a_id}",
            "model_version": battle.version_a,
            "generation": battle.generation_a,
        },
        {
            "text": battle.answer_b,
            "source": f"arena:model_version:{battle.version_b_id}",
            "model_version": battle.version_b,
            "generation": battle.generation_b,
        },
    ]
    task = labeling_services.ranking_task_create(
        prompt=battle.prompt, answers=answers, actor=user, k=2, metadata={"arena_battle_id": battle.pk}
    )
    # Finished at birth: nobody else is ever offered it; the voter's Ranking is its one completion.
    a, b = task.candidates.order_by("id").values_list("public_id", flat=True)
    groups = {"a": [[a], [b]], "b": [[b], [a]], "tie": [[a, b]], "both_bad": [[a, b]]}[vote]
    # Its audit event is an arena one, not "ranking.submitted": the vote is labeling data, but not
    # an annotator's submission, so the project page's throughput and active annotators leave it out.
    submissions.ranking_record_finished(
        task=task,
        annotator=user,
        groups=groups,
        client_id=uuid.uuid5(ARENA_NAMESPACE, str(battle.pk)),
        verb=ARENA_RANKING_VERB,
        actor=user,
        leased_at=battle.created_at,
        none_acceptable=vote == "both_bad",
        candidate_order=[a, b],
        payload={
            "groups": groups,
            "ratings": {},
            "flags": {},
            "none_acceptable": vote == "both_bad",
            "shown_order": [a, b],
            "arena_battle_id": battle.pk,
        },
        now=now,
    )
    return task
