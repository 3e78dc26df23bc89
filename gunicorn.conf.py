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
