"""Dataset snapshots: immutable, hashed, documented exports of a project's labels (TRL formats),
their builds (exports/), API and page."""
