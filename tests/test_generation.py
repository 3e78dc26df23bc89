"""Candidate generation: batched sampling on a tiny model, ranking tasks with lineage on every
answer, idempotent redelivery, deploys changing where new tasks come from, and a real Celery
worker over Redis."""

import re

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import call_command
from django.test import override_settings

from labeling import leases, validation
from labeling import services as labeling_services
from labeling.models import Candidate, Event, Task
from tests.factories import add_ranking_task, api_client, register_copy, wait_until
from training.ml.generation import (
    BaseGenerator,
    Sample,
    SamplingParams,
    TransformersGenerator,
    answer_near_duplicate,
    answer_text_clean,
    generator_for,
)
from training.registry import generation as services
from training.registry import services as registry_services
from training.registry.models import GeneratedTask, GenerationJob
from worker import queue as worker_queue
from worker.celery import app

PROMPTS = [
    "台灣第一高峰是那一座？",
    "What is the highest mountain in the world?",
    [
        {"role": "user", "content": "我想學做菜"},
        {"role": "assistant", "content": "從番茄炒蛋開始。"},
        {"role": "user", "content": "怎麼做？"},
    ],
]
FAST = {"max_new_tokens": 8, "seed": 7}


# --- the ML core, no database -----------------------------------------------------------------


def test_batched_greedy_matches_one_prompt_at_a_time(tiny_model_path):
    """Left padding is right: a prompt's answer does not depend on the other prompts in its batch."""
    generator = TransformersGenerator(tiny_model_path, batch_size=8)
    conversations = [validation.messages_clean(p) for p in PROMPTS]
    greedy = SamplingParams(temperature=0, max_new_tokens=12)
    batched = generator.generate(conversations, greedy, seed=0)
    alone = [generator.generate([c], greedy, seed=0)[0] for c in conversations]
    assert [s.text for s in batched] == [s.text for s in alone]
    assert all(s.new_tokens <= 12 and s.finish_reason in ("stop", "length") for s in batched)


def test_answers_are_sampled_in_bf16_where_the_cpu_has_it_and_the_trained_model_stays_float32(
    tiny_model_path, monkeypatch
):
    """On a CPU with native bf16 the candidates and a trainer's samples are drawn in bf16, from a copy:
    the policy being trained keeps its float32 weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.ml import generation
    from training.ml.evaluate import sample_answers

    monkeypatch.setattr(generation, "cpu_has_native_bf16", lambda: True)
    assert generation.pick_sampling_device() == ("cpu", "bfloat16")
    assert TransformersGenerator(tiny_model_path).describe()["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    copy = generation.for_sampling(model)
    assert next(copy.parameters()).dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32
    conversations = [validation.messages_clean(p) for p in PROMPTS]
    answers = sample_answers(
        model, AutoTokenizer.from_pretrained(tiny_model_path), conversations, SamplingParams(**FAST)
    )
    assert len(answers) == 3 and next(model.parameters()).dtype == torch.float32
    monkeypatch.setattr(generation, "cpu_has_native_bf16", lambda: False)  # emulated bf16 is slower: float32
    assert generation.pick_sampling_device() == ("cpu", "float32") and generation.for_sampling(model) is model


def test_k_distinct_answers_with_their_seeds(tiny_model_path):
    generator = generator_for(tiny_model_path)
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS[:2]]
    answers = generator.sample_distinct(conversations, 4, SamplingParams(max_new_tokens=8, seed=11))
    for samples in answers:
        assert len(samples) == 4 and len({s.text for s in samples}) == 4
        assert all(s.text and s.seed >= 11 for s in samples)
    again = generator.sample_distinct(conversations, 4, SamplingParams(max_new_tokens=8, seed=11))
    assert [[s.text for s in row] for row in again] == [[s.text for s in row] for row in answers]


class ScriptedGenerator(BaseGenerator):
    """Answers from a script, to test the resampling rules exactly."""

    def __init__(self, script):
        super().__init__("scripted")
        self.script, self.calls = iter(script), []

    def generate(self, conversations, params, *, seed, on_step=None):
        self.calls.append((len(conversations), seed))
        return [Sample(text=next(self.script), finish_reason="stop", new_tokens=1, seed=seed) for _ in conversations]


def test_duplicates_and_empty_answers_are_drawn_again():
    generator = ScriptedGenerator(["x", "x", "", "y", "x", "z"])
    [samples] = generator.sample_distinct([[{"role": "user", "content": "hi"}]], 3, SamplingParams(seed=5))
    assert [(s.text, s.attempt) for s in samples] == [("x", 0), ("y", 1), ("z", 2)]
    assert [n for n, _ in generator.calls] == [3, 2, 1]  # only the missing answers are drawn again
    assert len({seed for _, seed in generator.calls}) == 3  # each round draws from a new seed


def test_resampling_is_bounded():
    generator = ScriptedGenerator(["same"] * 100)
    [samples] = generator.sample_distinct([[{"role": "user", "content": "hi"}]], 3, SamplingParams(), max_resamples=2)
    assert len(samples) == 1 and len(generator.calls) == 3  # short: the caller skips this prompt


def test_invalid_text_and_near_duplicates_are_drawn_again():
    script = ["台灣\ufffd高峰", "玉山", "玉山。", "Yushan", "  yushan!", "", "雪山"]
    generator = ScriptedGenerator(script)
    [samples] = generator.sample_distinct([[{"role": "user", "content": "台灣第一高峰？"}]], 3, SamplingParams(seed=5))
    assert [s.text for s in samples] == ["玉山", "Yushan", "雪山"]
    assert answer_near_duplicate("Mount Everest, the highest.", "Mount Everest — the highest!")
    assert not answer_near_duplicate("玉山，3,952 公尺", "雪山，3,886 公尺")


def test_an_answer_cut_inside_a_character_keeps_no_replacement_character(tiny_model_path):
    generator = generator_for(tiny_model_path)
    tokens = generator.tokenizer.encode("台灣第一高峰是玉山", add_special_tokens=False)
    cut = [tokens[:n] for n in range(1, len(tokens)) if generator.tokenizer.decode(tokens[:n]).endswith("\ufffd")]
    assert cut, "the tokenizer splits these characters over tokens"
    for prefix in cut:
        sample = generator._sample(prefix, seed=0)
        assert "\ufffd" not in sample.text and sample.finish_reason == "length"
        assert "台灣第一高峰是玉山".startswith(sample.text)
    assert answer_text_clean(" 玉山\ufffd\ufffd ") == "玉山"


def test_generation_stops_at_the_end_of_turn_token(tiny_model_path):
    generator = generator_for(tiny_model_path)
    tokenizer = generator.tokenizer
    words = tokenizer.encode("Yushan is high", add_special_tokens=False)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    sample = generator._sample([*words, end, end, end], seed=3)
    assert (sample.text, sample.finish_reason, sample.new_tokens) == ("Yushan is high", "stop", len(words) + 1)
    assert generator._sample(words, seed=3).finish_reason == "length"


def test_a_loaded_model_is_reused(tiny_model_path):
    assert generator_for(tiny_model_path) is generator_for(tiny_model_path)


# --- generation jobs ------------------------------------------------------------------------------


@pytest.fixture
def policy(project, model_store, tiny_model_path):
    for prompt in PROMPTS:
        labeling_services.prompt_create(project=project, messages=prompt)
    return register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)


def run_job(project, **kwargs) -> GenerationJob:
    job = services.generation_job_start(project=project, sampling=FAST, enqueue=False, **kwargs)
    return services.candidates_generate(job_id=job.pk) or GenerationJob.objects.get(pk=job.pk)


@pytest.mark.django_db
def test_generation_creates_ranking_tasks_with_lineage_on_every_answer(project, policy):
    job = run_job(project)
    assert (job.status, job.prompts_total, job.prompts_done, job.tasks_created) == ("succeeded", 3, 3, 3)
    assert job.backend["backend"] == "transformers" and job.backend["device"] == "cpu"
    tasks = Task.objects.filter(kind=Task.Kind.RANKING)
    assert tasks.count() == 3 and all(t.candidates.count() == project.k for t in tasks)
    for candidate in Candidate.objects.all():
        assert candidate.model_version == policy
        assert candidate.source == f"model_version:{policy.pk}"
        assert candidate.generation["sampling"] == job.sampling == services.sampling_params_from(FAST).as_dict()
        assert isinstance(candidate.generation["seed"], int) and candidate.generation["generation_job"] == job.pk
        assert candidate.generation["finish_reason"] in ("stop", "length")
    for task in tasks:
        assert len({c.text for c in task.candidates.all()}) == project.k
    assert Event.objects.filter(verb="task.created", payload__generation_job_id=job.pk).count() == 3


@pytest.mark.django_db
def test_redelivered_message_and_rerun_create_no_duplicates(project, policy):
    job = run_job(project)
    assert services.candidates_generate(job_id=job.pk) is None  # the same message again: claims nothing
    # A worker died mid-job and the broker redelivers: the job is claimable again, work is not redone.
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.QUEUED)
    again = services.candidates_generate(job_id=job.pk)
    assert (again.status, again.prompts_total, again.attempts) == ("succeeded", 0, 2)
    second = run_job(project)  # a new job for the same version
    assert second.tasks_created == 0
    assert Task.objects.filter(kind=Task.Kind.RANKING).count() == GeneratedTask.objects.count() == 3


@pytest.mark.django_db
def test_two_workers_racing_on_one_prompt_make_one_task(project, policy):
    job = services.generation_job_start(project=project, sampling=FAST, enqueue=False)
    job = services.generation_job_claim(job_id=job.pk)
    prompt = project.prompts.first()
    samples = generator_for(policy.path).sample_distinct([prompt.messages], project.k, SamplingParams(**FAST))[0]
    params = SamplingParams(**FAST)
    first = services._generated_task_create(job=job, prompt=prompt, samples=samples, params=params, backend={})
    second = services._generated_task_create(job=job, prompt=prompt, samples=samples, params=params, backend={})
    assert (first, second) == (True, False)
    assert Task.objects.filter(prompt=prompt, kind=Task.Kind.RANKING).count() == 1


@pytest.mark.django_db
def test_deploying_a_new_policy_makes_new_tasks_come_from_it(project, policy, model_store, tiny_model_path_b):
    run_job(project)
    old_answers = {c.pk: c.text for c in Candidate.objects.all()}
    round1 = register_copy(project, tiny_model_path_b, name="round 1", store=model_store, parent=policy, round_number=1)
    registry_services.policy_deploy(version=round1)
    job = run_job(project)
    assert job.model_version == round1 and job.tasks_created == 3
    new = Candidate.objects.exclude(pk__in=old_answers)
    assert new.count() == 3 * project.k and set(new.values_list("model_version", flat=True)) == {round1.pk}
    assert {c.pk: c.text for c in Candidate.objects.filter(pk__in=old_answers)} == old_answers
    assert set(Candidate.objects.filter(pk__in=old_answers).values_list("model_version", flat=True)) == {policy.pk}


@pytest.mark.django_db
def test_limit_and_one_active_job_per_project(project, policy):
    job = services.generation_job_start(project=project, sampling=FAST, limit=2, enqueue=False)
    with pytest.raises(services.Conflict, match="already queued or running"):
        services.generation_job_start(project=project, enqueue=False)
    job = services.candidates_generate(job_id=job.pk)
    assert (job.prompts_total, job.tasks_created) == (2, 2)


@pytest.mark.django_db
def test_a_failed_job_is_recorded_and_raised(project, policy):
    import shutil

    shutil.rmtree(policy.path)
    job = services.generation_job_start(project=project, sampling=FAST, enqueue=False)
    with pytest.raises(FileNotFoundError):
        services.candidates_generate(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "missing" in job.error and job.finished_at is not None
    assert Event.objects.filter(verb="generation.failed").exists()


@pytest.mark.django_db
def test_cancelled_job_stops_and_keeps_its_status(project, policy):
    job = services.generation_job_start(project=project, sampling=FAST, enqueue=False)
    assert services.generation_job_cancel(job=job)
    assert services.candidates_generate(job_id=job.pk) is None
    assert GenerationJob.objects.get(pk=job.pk).status == "cancelled"


@pytest.mark.django_db
def test_no_deployed_policy_no_job(project, admin_user):
    with pytest.raises(services.Conflict, match="no deployed policy"):
        services.generation_job_start(project=project, actor=admin_user)


@pytest.mark.django_db
def test_start_enqueues_after_commit_on_the_gpu_queue(project, policy, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(worker_queue, "send", lambda name, *args: sent.append((name, *args)))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = services.generation_job_start(project=project)
    assert sent == [] and len(callbacks) == 1  # nothing leaves before the job row is committed
    callbacks[0]()
    assert sent == [("worker.tasks.gpu_generate_candidates", job.pk)]
    route = app.amqp.router.route({}, "worker.tasks.gpu_generate_candidates")
    assert route["queue"].name == "gpu"


@pytest.mark.django_db
def test_generate_candidates_command_runs_now(project, policy, admin_user, capsys):
    round_waiting(project, admin_user)  # on the gpu queue; this job runs here, so it does not wait for it
    call_command("generate_candidates", "--project", project.name, "--now", "--max-new-tokens", "8", "--limit", "1")
    assert "succeeded: 1 ranking tasks" in capsys.readouterr().out


@pytest.mark.django_db
def test_admin_page_starts_a_job_and_shows_progress(client, project, policy, admin_user, monkeypatch):
    monkeypatch.setattr(services, "_generation_enqueue", lambda job_id: None)
    client.force_login(admin_user)
    response = client.post(f"/projects/{project.pk}/models/generate/", {"limit": "2"})
    assert response.status_code == 302
    job = GenerationJob.objects.get()
    assert job.limit == 2 and job.created_by == admin_user
    page = client.get(f"/projects/{project.pk}/models/").content.decode()
    assert 'http-equiv="refresh"' in page and "0 / 0 prompts" in page


# --- through a real worker ------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_generation_through_a_celery_worker_over_redis(redis_gpu_queue, project, policy):
    with override_settings(GENERATION_STALE_SECONDS=600):
        with start_worker(app, queues=[redis_gpu_queue], perform_ping_check=False, shutdown_timeout=60):
            job = services.generation_job_start(project=project, sampling=FAST)
            wait_until(
                lambda: GenerationJob.objects.get(pk=job.pk).status in ("succeeded", "failed"),
                seconds=120,
                what="the worker to finish the generation job",
            )
    job.refresh_from_db()
    assert (job.status, job.tasks_created, job.attempts) == ("succeeded", 3, 1), job.error
    assert set(Candidate.objects.values_list("model_version", flat=True)) == {policy.pk}


@pytest.mark.django_db
def test_generation_jobs_api_is_for_admins(project, policy, admin_user, researcher, monkeypatch):
    monkeypatch.setattr(services, "_generation_enqueue", lambda job_id: None)
    body = {"project": project.pk, "limit": 2, "sampling": {"temperature": 0.5, "max_new_tokens": 8}}
    assert api_client(researcher).post("/api/v1/generation-jobs/", body, format="json").status_code == 403
    created = api_client(admin_user).post("/api/v1/generation-jobs/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["sampling"]["temperature"] == 0.5 and created.json()["status"] == "queued"
    again = api_client(admin_user).post("/api/v1/generation-jobs/", body, format="json")
    assert again.status_code == 409
    bad = api_client(admin_user).post("/api/v1/generation-jobs/", {**body, "sampling": {"top_p": 7}}, format="json")
    assert bad.status_code == 400 and "top_p" in bad.json()["detail"]
    listed = api_client(admin_user).get(f"/api/v1/generation-jobs/?project={project.pk}").json()
    assert [job["id"] for job in listed] == [created.json()["id"]]


@pytest.mark.django_db
def test_cancel_stops_a_job_in_the_middle_of_a_batch(project, policy, monkeypatch):
    monkeypatch.setattr(services._Heartbeat, "EVERY_SECONDS", 0)
    job = services.generation_job_start(project=project, sampling=FAST, enqueue=False)
    real_generator_for = services.generator_for

    def generator_cancelled_on_first_batch(path, **options):
        generator = real_generator_for(path, **options)

        class CancelFirst:
            def __getattr__(self, name):
                return getattr(generator, name)

            def sample_distinct(self, *args, **kwargs):
                services.generation_job_cancel(job=job)  # an admin presses Cancel while it samples
                return generator.sample_distinct(*args, **kwargs)

        return CancelFirst()

    monkeypatch.setattr(services, "generator_for", generator_cancelled_on_first_batch)
    services.candidates_generate(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.prompts_done, job.tasks_created) == ("cancelled", 0, 0)
    assert not Task.objects.filter(kind=Task.Kind.RANKING).exists()


@pytest.mark.django_db
def test_replace_fails_jobs_left_by_stopped_workers(project, policy):
    stuck = services.generation_job_start(project=project, sampling=FAST, enqueue=False)
    services.generation_job_claim(job_id=stuck.pk)  # a worker took it, then the machine stopped
    fresh = services.generation_job_start(project=project, sampling=FAST, enqueue=False, replace_active=True)
    stuck.refresh_from_db()
    assert stuck.status == "failed" and "Replaced" in stuck.error
    assert services.candidates_generate(job_id=fresh.pk).tasks_created == 3
    assert services.candidates_generate(job_id=stuck.pk) is None  # its old message claims nothing


def round_waiting(project, admin_user):
    """A round whose first stage (snapshot) waits for the gpu worker."""
    from tests.factories import TINY
    from training.rounds import services as rounds

    round_ = rounds.round_start(project=project, config=TINY, actor=admin_user, enqueue=False)
    return round_, round_.stages.get(name="snapshot")


@pytest.mark.django_db
def test_a_job_pauses_for_a_waiting_round_and_resumes_once_it_has_gone_first(
    project, policy, admin_user, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(worker_queue, "send", lambda name, *args: sent.append((name, args)))
    job = services.generation_job_start(project=project, sampling=FAST, enqueue=False)
    round_, stage = round_waiting(project, admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        services.candidates_generate(job_id=job.pk)
    job.refresh_from_db()
    # Back in the queue, behind the round's stage, before sampling anything.
    assert (job.status, job.tasks_created, job.yielded_to_stage) == ("queued", 0, stage.pk)
    assert sent == [("worker.tasks.gpu_generate_candidates", (job.pk,))]
    assert Event.objects.filter(verb="generation.paused", payload__round_stage_id=stage.pk).exists()
    # The stage ran and the next one waits: the job pauses again, once for each stage.
    stage.status = "succeeded"
    stage.save()
    services.candidates_generate(job_id=job.pk)
    sft = round_.stages.get(name="sft")
    assert GenerationJob.objects.get(pk=job.pk).yielded_to_stage == sft.pk
    # The round has left the gpu: the job resumes and finishes.
    round_.stages.update(status="succeeded")
    round_.status = "succeeded"
    round_.save()
    job = services.candidates_generate(job_id=job.pk)
    assert (job.status, job.tasks_created) == ("succeeded", 3)


@pytest.mark.django_db
def test_a_job_pauses_only_once_for_a_stage_that_never_starts(project, policy, admin_user):
    """A stage still waiting when the job comes back lost its message (or has no worker): the job
    runs on instead of pausing for it forever."""
    job = services.generation_job_start(project=project, sampling=FAST, enqueue=False)
    round_waiting(project, admin_user)
    services.candidates_generate(job_id=job.pk)
    assert GenerationJob.objects.get(pk=job.pk).status == "queued"
    job = services.candidates_generate(job_id=job.pk)
    assert (job.status, job.tasks_created) == ("succeeded", 3)


@pytest.mark.django_db
def test_a_round_started_mid_job_pauses_it_within_a_heartbeat(project, policy, admin_user, monkeypatch):
    monkeypatch.setattr(services._Heartbeat, "EVERY_SECONDS", 0.0)
    make_task = services._generated_task_create
    started = []

    def first_task_then_a_round(**kwargs):
        made = make_task(**kwargs)
        if not started:
            started.append(round_waiting(project, admin_user))
        return made

    monkeypatch.setattr(services, "_generated_task_create", first_task_then_a_round)
    job = run_job(project)
    # The first batch (one prompt) was kept; the rest waits for the round.
    assert (job.status, job.tasks_created) == ("queued", 1)
    assert job.yielded_to_stage == started[0][1].pk


@pytest.mark.django_db
def test_deploying_a_rounds_policy_supersedes_a_paused_job_of_the_older_one(
    project, policy, admin_user, model_store, tiny_model_path_b
):
    from training.rounds.services import round_deploy_and_generate

    old_job = services.generation_job_start(project=project, sampling=FAST, enqueue=False)
    round_, _ = round_waiting(project, admin_user)
    services.candidates_generate(job_id=old_job.pk)  # pauses for the round
    new_policy = register_copy(project, tiny_model_path_b, name="round 1", store=model_store, parent=policy)
    round_.policy_version = new_policy
    round_.save()
    round_deploy_and_generate(round_, actor=admin_user)
    old_job.refresh_from_db()
    assert old_job.status == "cancelled" and "Superseded" in old_job.error
    new_job = GenerationJob.objects.get(project=project, status="queued")
    assert new_job.model_version == new_policy  # the new policy writes the next candidates
    assert services.candidates_generate(job_id=old_job.pk) is None  # its message claims nothing


@pytest.mark.django_db
def test_the_newly_deployed_policys_tasks_are_served_before_older_ones(project, policy, annotator, model_store):
    older = add_ranking_task(project, text="An older ranking task, from before the deploy")
    job = run_job(project, limit=1)
    [new] = [g.task for g in GeneratedTask.objects.filter(job=job)]
    assert new.priority > older.priority == 0
    lease = leases.task_next_for(annotator=annotator, project=project)
    assert lease.task_id == new.pk  # although the older task came first
    leases.task_skip(annotator=annotator, task_id=lease.task_id)
    assert leases.task_next_for(annotator=annotator, project=project).task_id != new.pk  # the rest still come


@pytest.mark.django_db
def test_an_admin_can_raise_an_older_tasks_priority(project, policy, annotator2, admin_user, client):
    older = add_ranking_task(project, text="An older ranking task the admin wants done first")
    run_job(project, limit=1)
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    page = client.get("/admin/labeling/task/").content.decode()
    rows = dict((int(task), int(form)) for form, task in re.findall(r'name="form-(\d+)-id" value="(\d+)"', page))
    form = {"form-TOTAL_FORMS": len(rows), "form-INITIAL_FORMS": len(rows), "_save": "Save"}
    for task in Task.objects.filter(pk__in=rows):
        form[f"form-{rows[task.pk]}-id"] = task.pk
        form[f"form-{rows[task.pk]}-priority"] = 10_000 if task.pk == older.pk else task.priority
    assert client.post("/admin/labeling/task/", form).status_code == 302
    assert Task.objects.get(pk=older.pk).priority == 10_000
    assert leases.task_next_for(annotator=annotator2, project=project).task_id == older.pk


@pytest.mark.django_db
def test_non_finite_or_out_of_range_sampling_is_refused_by_name(project, policy, admin_user):
    body = '{"project": PK, "sampling": {"temperature": 1e400, "top_k": -1}}'.replace("PK", str(project.pk))
    refused = api_client(admin_user).post("/api/v1/generation-jobs/", body, content_type="application/json")
    assert refused.status_code == 400
    errors = refused.json()["errors"]
    assert errors["sampling.temperature"] == ["must be a finite number"]
    assert "sampling.top_k" in errors
    assert not GenerationJob.objects.exists()
