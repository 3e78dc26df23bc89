"""The demo project: users for every role, prompts in Chinese and English, ranking tasks whose
answers ship with the demo data. Safe to run twice.

The shipped labels: demonstrations written for every prompt, and preferences, most of them a
written answer preferred over what the base model (SmolLM2-135M-Instruct, temperature 0.7, at
most 96 tokens) answered to the same prompt. Half of the prompts (by a hash of their text) are
the frozen evaluation split, about 80: enough for a win rate and a reward-model accuracy whose
intervals say something."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from labeling import roles
from labeling.imports import dataset_import, prompts_import
from labeling.models import Project
from labeling.validation import RATING_SCALE

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
DEMO_FILE = DEMO_DIR / "demo_prompts.jsonl"
# Labels that ship with the demo (attributed to the 'imported' source), so a training round can
# run at once: demonstrations for SFT and pairwise preferences for the reward model.
DEMO_LABELS = [("demo_demonstrations.jsonl", "conversations"), ("demo_preferences.jsonl", "preferences")]
DEMO_PROJECT = "Yushan demo"
DEMO_HELD_OUT = 0.5  # the share of prompts in the frozen evaluation split
# The rating scale's words are validation.RATING_SCALE, as on the shortcuts list and the board.
GUIDELINES = f"""\
# How to label

**Demonstrations.** Write the answer you would want the best assistant to give: correct, helpful,
honest and harmless. Use markdown for lists and code.

**Rankings.** Order the answers from best to worst. Put answers of equal quality in one group
(a tie). If no answer is acceptable, say so. Rate each answer from 1 to 7: {RATING_SCALE} Flag
answers that are wrong, harmful or do not follow the instruction.

回答請用與問題相同的語言。
"""

# (username, password, role). Demo passwords: change them before anyone else can reach the site.
DEMO_USERS = [
    ("admin", "yushan-admin", "admin"),
    ("alice", "yushan-alice", roles.ANNOTATOR),
    ("bob", "yushan-bob", roles.ANNOTATOR),
    ("rita", "yushan-rita", roles.RESEARCHER),
    ("rosa", "yushan-rosa", roles.REVIEWER),
]


class Command(BaseCommand):
    help = "Create the demo project and demo users (safe to run twice)."

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        for username, password, role in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
            if role == "admin":
                user.is_staff = user.is_superuser = True
            user.save()
            if role != "admin":
                roles.role_grant(user=user, role=role)
        project, _ = Project.objects.get_or_create(
            name=DEMO_PROJECT,
            defaults={
                "guidelines": GUIDELINES,
                "k": 4,
                "overlap": 2,
                "lease_seconds": 600,
                "held_out_share": DEMO_HELD_OUT,
            },
        )
        report = prompts_import(project=project, text=DEMO_FILE.read_text(encoding="utf-8"), fmt="jsonl", source="demo")
        self.stdout.write(
            f"Demo project {project.name!r}: {report.created} new prompts "
            f"({report.ranking_tasks} ranking tasks), {report.duplicates} already there."
        )
        for name, fmt in DEMO_LABELS:
            labels = dataset_import(
                project=project, text=(DEMO_DIR / name).read_text(encoding="utf-8"), fmt=fmt, source=f"demo:{name}"
            )
            self.stdout.write(f"  {fmt}: {labels.created} new, {labels.duplicates} already there")
        held_out = project.prompts.filter(held_out=True).count()
        self.stdout.write(f"  {held_out} of {project.prompts.count()} prompts are the frozen evaluation split")
        for username, password, role in DEMO_USERS:
            self.stdout.write(f"  {role:<11} {username} / {password}")
