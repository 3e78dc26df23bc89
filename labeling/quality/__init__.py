"""Quality of the human labels: how far annotators agree (agreement.py, no Django), read from the
database by selectors.py, shown on the project page and at /api/v1/projects/<id>/agreement/."""
