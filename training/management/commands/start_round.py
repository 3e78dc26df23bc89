import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling.errors import LabelingError
from labeling.selectors import project_by_name_or_id
from training.rounds.models import Round
from training.rounds.runner import round_stage_run
from training.rounds.services import round_start


class Command(BaseCommand):
    help = (
        "Start a training round: snapshot → SFT → reward model → policy optimisation → evaluation → deploy. "
        "By default the stages run on the workers (queue gpu); --here runs them in this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project name or id.")
        parser.add_argument("--config", type=Path, help="JSON file with per-stage settings (see the README).")
        parser.add_argument("--here", action="store_true", help="Run every stage in this process, no worker needed.")
        parser.add_argument("--wait", action="store_true", help="Wait for the round to finish, printing progress.")

    def handle(self, *args, project: str, config: Path | None, here: bool, wait: bool, **options):
        target = project_by_name_or_id(project)
        if target is None:
            raise CommandError(f"No project {project!r}.")
        try:
            settings = json.loads(config.read_text(encoding="utf-8")) if config else None
        except (OSError, json.JSONDecodeError) as error:
            raise CommandError(f"Cannot read {config}: {error}") from None
        started = time.monotonic()
        try:
            round_ = round_start(project=target, config=settings, enqueue=not here)
        except LabelingError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"Round {round_.number} of {target.name} started (id {round_.pk}).")
        if here:
            while (stage := round_stage_run(round_id=round_.pk)) is not None:
                self.stdout.write(f"  {stage} finished after {time.monotonic() - started:.0f} s")
        elif wait:
            self._wait(round_.pk)
        round_.refresh_from_db()
        self.stdout.write(
            f"Round {round_.number}: {round_.get_status_display()} after {time.monotonic() - started:.0f} s"
            + (f" — {round_.error}" if round_.error else "")
        )
        if round_.evaluation:
            summary = {k: v for k, v in round_.evaluation.items() if not isinstance(v, list | dict)}
            self.stdout.write(f"Evaluation: {json.dumps(summary)}")
        if round_.status in (Round.Status.FAILED, Round.Status.CANCELLED):
            raise CommandError(f"Round {round_.number} {round_.status}.")

    def _wait(self, round_id: int) -> None:
        seen = None
        while True:
            round_ = Round.objects.get(pk=round_id)
            running = round_.stages.filter(status="running").first()
            line = f"{round_.status}" + (f" · {running.name} {running.step}/{running.total}" if running else "")
            if line != seen:
                self.stdout.write(f"  {line}")
                seen = line
            if round_.status not in ("queued", "running"):
                return
            time.sleep(2)
