"""Compile the translation catalogues (locale/*/LC_MESSAGES/*.po) into the .mo files Django reads.

Django's own compilemessages needs GNU gettext's msgfmt, which a laptop or the python:3.11-slim
image may lack; polib is pure Python. A .mo newer than its .po is left alone, so `make run` and
`make test` pay for this only after a catalogue changed. Each file is written beside and then
renamed into place, so a server reading it never sees half a catalogue.
"""

import os
import tempfile
from pathlib import Path

import polib
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def catalogues() -> list[Path]:
    return sorted(path for folder in settings.LOCALE_PATHS for path in Path(folder).glob("*/LC_MESSAGES/*.po"))


def catalogue_compile(po_path: Path, *, force: bool = False) -> bool:
    """Write po_path's .mo; False when it was already up to date."""
    mo_path = po_path.with_suffix(".mo")
    if not force and mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
        return False
    catalogue = polib.pofile(str(po_path))
    fuzzy = [entry.msgid for entry in catalogue.fuzzy_entries()]
    if fuzzy:
        # msgfmt leaves fuzzy entries out; so would we, silently showing English: say so instead.
        raise CommandError(f"{po_path}: {len(fuzzy)} fuzzy entries, e.g. {fuzzy[0]!r}; translate them first.")
    handle, temporary = tempfile.mkstemp(dir=mo_path.parent, suffix=".mo.tmp")
    os.close(handle)
    try:
        catalogue.save_as_mofile(temporary)
        os.replace(temporary, mo_path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return True


class Command(BaseCommand):
    help = "Compile locale/*/LC_MESSAGES/*.po into .mo files (pure Python; no msgfmt needed)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="compile even the catalogues that are up to date")

    def handle(self, *args, force: bool = False, verbosity: int = 1, **options):
        for po_path in catalogues():
            if catalogue_compile(po_path, force=force) and verbosity:
                self.stdout.write(f"compiled {po_path.relative_to(settings.BASE_DIR)}")
