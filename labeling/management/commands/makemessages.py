"""Django's makemessages, which also extracts the round settings' help texts and messages.

The ML core (training/ml) stays free of Django, so its settings declare their help in plain
English, `setting(default, "help text", ...)`, and mark the templates of their messages (and the
words that go into them) with `translatable("must be %(kind)s from %(low)s to %(high)s")`, a
function that returns its argument. The Django side translates both where it shows them
(training.rounds.views, training.rounds.config); these keywords put them in the catalogue.
"""

from django.core.management.commands import makemessages


class Command(makemessages.Command):
    xgettext_options = [*makemessages.Command.xgettext_options, "--keyword=setting:2", "--keyword=translatable"]
