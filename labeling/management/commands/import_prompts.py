from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling.imports import prompts_import
from labeling.selectors import project_by_name_or_id


class Command(BaseCommand):
    help = (
        "Import prompts (JSONL with `prompt` or `messages`, optional `answers` and `gold`; "
        "or CSV with `prompt`, optional `gold`). See labeling/imports.py."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--project", required=True, help="Project name or id.")
        parser.add_argument("--format", choices=["jsonl", "csv"], help="Default: from the file's extension.")

    def handle(self, *args, file: Path, project: str, format: str | None, **options):
        target = project_by_name_or_id(project)
        if target is None:
            raise CommandError(f"No project {project!r}.")
        if not file.exists():
            raise CommandError(f"No file {file}.")
        fmt = format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")
        text = file.read_text(encoding="utf-8-sig")  # -sig: CSV saved by Excel starts with a BOM
        report = prompts_import(project=target, text=text, fmt=fmt, source=file.name)
        for line, problem in report.errors:
            self.stderr.write(f"{file}:{line}: skipped: {problem}")
        gold = f", {report.gold_tasks} gold" if report.gold_tasks else ""
        self.stdout.write(
            f"Imported {report.created} prompts ({report.ranking_tasks} with ranking tasks{gold}); "
            f"{report.duplicates} already present; {len(report.errors)} rows skipped."
        )
