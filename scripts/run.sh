#!/usr/bin/env bash
# Start Yushan on one machine: migrate, load the demo, run a Celery worker (with its beat
# schedule) and the web server; stop both on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8000}
HOST=${HOST:-127.0.0.1}
mkdir -p var

"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py seed_demo

"$BIN/celery" -A worker.celery worker --beat --queues default,gpu --concurrency 1 \
    --loglevel INFO --schedule var/celerybeat-schedule > var/worker.log 2>&1 &
WORKER_PID=$!
trap 'kill $WORKER_PID 2>/dev/null || true' EXIT INT TERM

cat <<MSG

  Yushan is running at http://$HOST:$PORT/
  API docs: http://$HOST:$PORT/api/docs/    worker log: var/worker.log
  Demo logins (change them before sharing the site):
    admin      admin / yushan-admin
    annotator  alice / yushan-alice
    annotator  bob   / yushan-bob
    researcher rita  / yushan-rita
  Stop with Ctrl-C.

MSG
"$BIN/python" manage.py runserver "$HOST:$PORT" --noreload
