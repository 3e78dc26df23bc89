"""Django's makemessages, which also extracts the help texts of the round settings.

The ML core (training/ml) stays free of Django, so its settings declare their help in plain
English: `setting(default, "help text", ...)`. The round form translates them where it shows them
(training.rounds.views); this keyword puts them in the catalogue.
"""

from django.core.management.commands import makemessages


class Command(makemessages.Command):
    xgettext_options = [*makemessages.Command.xgettext_options, "--keyword=setting:2"]
