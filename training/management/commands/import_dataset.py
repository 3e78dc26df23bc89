from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling.errors import LabelingError
from labeling.imports import DATASET_FORMATS, dataset_import
from labeling.selectors import project_by_name_or_id


class Command(BaseCommand):
    help = (
        "Import a dataset into a project: prompts (JSONL), conversations (`messages` ending with the "
        "assistant), preferences (TRL prompt/chosen/rejected, conversational or plain) or hh "
        "(Anthropic HH-RLHF chosen/rejected transcripts). Bad rows are reported and skipped; "
        "re-importing a file adds nothing twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--project", required=True, help="Project name or id.")
        parser.add_argument("--format", required=True, choices=DATASET_FORMATS)

    def handle(self, *args, file: Path, project: str, format: str, **options):
        target = project_by_name_or_id(project)
        if target is None:
            raise CommandError(f"No project {project!r}.")
        if not file.exists():
            raise CommandError(f"No file {file}.")
        try:
            report = dataset_import(
                project=target, text=file.read_text(encoding="utf-8-sig"), fmt=format, source=file.name
            )
        except (LabelingError, UnicodeDecodeError) as error:
            raise CommandError(str(getattr(error, "message", error))) from None
        for line, problem in report.errors:
            self.stderr.write(f"{file}:{line}: skipped: {problem}")
        self.stdout.write(
            f"Imported {report.created} rows; {report.duplicates} already present; {len(report.errors)} skipped."
        )
