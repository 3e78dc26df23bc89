from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling.errors import LabelingError
from labeling.selectors import project_by_name_or_id
from training.datasets.services import snapshot_build, snapshot_copy, snapshot_create


class Command(BaseCommand):
    help = (
        "Freeze a dataset snapshot and write it out. --out DIR writes KIND.FORMAT and README.md into DIR; "
        "--out FILE.jsonl|FILE.parquet writes the data there and the card beside it as FILE.README.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project name or id.")
        parser.add_argument("--kind", required=True, choices=["sft", "preference", "ranking", "annotations"])
        parser.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"])
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument("--pairs", default="all", choices=["all", "best_worst"], help="Preference pairs.")
        parser.add_argument("--margin", action="store_true", help="Add a rating margin to preference pairs.")
        parser.add_argument("--date-from")
        parser.add_argument("--date-to")
        parser.add_argument("--round", type=int)
        parser.add_argument("--model-version", type=int)
        parser.add_argument("--min-agreement", type=float)
        parser.add_argument("--exclude-flagged", action="store_true")
        parser.add_argument("--exclude-none-acceptable", action="store_true")

    def handle(self, *args, **opts):
        project = project_by_name_or_id(opts["project"])
        if project is None:
            raise CommandError(f"No project {opts['project']!r}.")
        filters = {
            "date_from": opts["date_from"],
            "date_to": opts["date_to"],
            "round": opts["round"],
            "model_version": opts["model_version"],
            "min_agreement": opts["min_agreement"],
            "exclude_flagged": opts["exclude_flagged"],
            "exclude_none_acceptable": opts["exclude_none_acceptable"],
            "margin": opts["margin"],
        }
        try:
            snapshot = snapshot_create(
                project=project,
                kind=opts["kind"],
                format=opts["format"],
                pair_mode=opts["pairs"],
                filters={k: v for k, v in filters.items() if v not in (None, False)},
            )
            snapshot_build(snapshot_id=snapshot.pk)
        except LabelingError as error:
            raise CommandError(error.message) from None
        snapshot.refresh_from_db()
        out: Path = opts["out"]
        if out.suffix in (".jsonl", ".parquet"):
            out.parent.mkdir(parents=True, exist_ok=True)
            data_target, card_target = out, out.with_suffix(".README.md")
        else:
            out.mkdir(parents=True, exist_ok=True)
            data_target, card_target = out / snapshot.data_file_name, out / "README.md"
        try:
            snapshot_copy(snapshot=snapshot, name=snapshot.data_file_name, target=data_target)
            snapshot_copy(snapshot=snapshot, name="README.md", target=card_target)
        except LabelingError as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            f"Snapshot {snapshot.pk}: {snapshot.counts['rows']} rows → {data_target} "
            f"(sha256 {snapshot.files[0]['sha256']}); card → {card_target}"
        )
