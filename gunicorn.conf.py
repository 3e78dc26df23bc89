"""Gunicorn settings for production: `gunicorn feedback_site.wsgi -c gunicorn.conf.py`.

Environment: PORT and HOST (bind), WEB_CONCURRENCY (workers), GUNICORN_THREADS.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
keepalive = 5
timeout = 60
graceful_timeout = 30
# Each worker listens on its own socket and the kernel spreads new connections over them. With
# one shared socket, long-lived keep-alive connections pile up on whichever worker woke first:
# under load, most annotators waited 4.6 times as long per loop as one alone on a worker
# (benchmarks/annotate_load.py prints the spread).
reuse_port = True
