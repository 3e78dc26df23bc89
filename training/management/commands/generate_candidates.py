from django.core.management.base import BaseCommand, CommandError

from labeling.errors import Conflict, LabelingError
from labeling.selectors import project_by_name_or_id
from training.registry import generation
from training.registry.models import GenerationJob


class Command(BaseCommand):
    help = (
        "Queue a generation job on the gpu queue: the deployed policy samples K answers for every prompt "
        "that has no ranking task from it yet. --now runs it in this process instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project name or id.")
        parser.add_argument("--limit", type=int, help="At most this many prompts.")
        parser.add_argument("--max-new-tokens", type=int)
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--now", action="store_true", help="Generate in this process, without a worker.")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Fail the project's queued or running jobs first (at start-up, when no worker is running them).",
        )

    def handle(self, *args, **opts):
        project = project_by_name_or_id(opts["project"])
        if project is None:
            raise CommandError(f"No project {opts['project']!r}.")
        names = {"max_new_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed"}
        sampling = {key: opts[option] for option, key in names.items() if opts[option] is not None}
        try:
            if opts["now"]:
                job = generation.generation_job_start(
                    project=project, sampling=sampling, limit=opts["limit"], enqueue=False
                )
                # In this process, not on the gpu queue: it has no round to give way to.
                job = generation.candidates_generate(job_id=job.pk, rounds_first=False)
                self.stdout.write(
                    f"Job {job.pk} {job.status}: {job.tasks_created} ranking tasks from {job.model_version}, "
                    f"{job.prompts_skipped} prompts skipped."
                )
                return
            job = generation.generation_job_start(
                project=project, sampling=sampling, limit=opts["limit"], replace_active=opts["replace"]
            )
        except Conflict as error:
            active = GenerationJob.objects.filter(project=project, status__in=GenerationJob.ACTIVE).first()
            if active is None:
                raise CommandError(error.message) from None
            self.stdout.write(f"Generation job {active.pk} is already {active.status} for {project.name}.")
            return
        except LabelingError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"Queued generation job {job.pk} for {project.name} with {job.model_version} (queue: gpu).")
