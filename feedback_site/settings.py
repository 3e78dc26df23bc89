"""Yushan settings: one file, driven by environment variables with safe defaults.

Out of the box it runs on SQLite with an embedded (filesystem) Celery broker, so `make run`
needs no server. DATABASE_URL and CELERY_BROKER_URL switch to PostgreSQL and Redis.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("YUSHAN_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


DEFAULT_SECRET_KEY = "yushan-insecure-development-key-change-me"
SECRET_KEY = env_str("SECRET_KEY", DEFAULT_SECRET_KEY)
DEBUG = env_bool("DEBUG", True)
PRODUCTION = env_bool("YUSHAN_PRODUCTION", False)
if PRODUCTION and DEBUG:
    # DEBUG pages leak settings and source to anyone who triggers an error.
    raise ImproperlyConfigured("YUSHAN_PRODUCTION=1 requires DEBUG=0.")
if (PRODUCTION or not DEBUG) and SECRET_KEY == DEFAULT_SECRET_KEY:
    # A public secret key lets anyone forge sessions and password-reset links.
    raise ImproperlyConfigured("Set SECRET_KEY to a secret of your own when DEBUG is off.")
if (PRODUCTION or not DEBUG) and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    # Django's own bar (check --deploy, W009): a short key can be guessed offline from one cookie.
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak: use at least 50 random characters, e.g. `openssl rand -hex 32`."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "labeling",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After the session (a stored choice lives there), before CommonMiddleware (which may redirect).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "labeling.language.UserLanguageMiddleware",  # a signed-in user's own choice beats the browser's
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out login into labeling.login_limits' 429
]

ROOT_URLCONF = "feedback_site.urls"
WSGI_APPLICATION = "feedback_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "labeling.context.roles",
            ]
        },
    }
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'yushan.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A small team on SQLite must not see "database is locked" or double work: WAL lets readers
    # run beside the writer, IMMEDIATE transactions take the write lock at BEGIN (so the read
    # that decides which task to lease is serialised with the write that leases it), and the
    # busy timeout makes a second writer wait instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (not :memory:) so threads in concurrency and browser tests share it; one per process
    # so two test runs on one machine never write the same file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (login rate limits) -------------------------------------------------------------------
CACHE_URL = env_str("CACHE_URL", "")
if CACHE_URL.startswith("redis://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Login limits, one policy for the login page and the token endpoint (labeling/login_limits.py):
# django-axes locks a username (normalised as Django's login normalises it) after
# LOGIN_FAILURE_LIMIT failures within LOGIN_FAILURE_WINDOW_SECONDS, whatever the address; a
# success clears it. An address may try LOGIN_THROTTLE_RATE logins (any usernames) and is only
# slowed, never locked: an office behind one NAT keeps working. PROXY_COUNT: how many proxies
# in front of the app append to X-Forwarded-For (0: trust only the socket's address).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 300)
LOGIN_THROTTLE_RATE = env_str("LOGIN_THROTTLE_RATE", "20/min")
PROXY_COUNT = env_int("PROXY_COUNT", 1 if env_bool("BEHIND_TLS_PROXY", False) else 0)
AUTHENTICATION_BACKENDS = [
    "labeling.login_limits.LoginLimitBackend",  # axes' check; refuses a locked username
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_FAILURE_LIMIT = "labeling.login_limits.failure_limit"
AXES_COOLOFF_TIME = "labeling.login_limits.cool_off"
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "labeling.login_limits.username_key"
AXES_LOCKOUT_CALLABLE = "labeling.login_limits.lockout_response"
AXES_CLIENT_IP_CALLABLE = "labeling.login_limits.client_address"  # recorded with each attempt
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # attempts are kept in the database and shown in the Django admin

# With DEBUG off the site is served over HTTPS only: secure cookies, plain HTTP redirected, and
# HSTS (a year, subdomains included; HSTS_SECONDS=0 turns it off). HTTPS_ONLY=0 serves plain HTTP
# (a trusted network without TLS); preloading into browsers is the domain owner's own step.
HTTPS_ONLY = env_bool("HTTPS_ONLY", PRODUCTION or not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS_ONLY
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 365 * 24 * 3600) if HTTPS_ONLY else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
# Behind a TLS-terminating proxy (nginx, a load balancer) Django must trust its X-Forwarded-Proto,
# or it sees plain HTTP and secure cookies and redirects misbehave.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SILENCED_SYSTEM_CHECKS = [
    "security.W021",  # HSTS preload: a commitment only the domain's owner can make, by hand
    "axes.W006",  # addresses are throttled (LoginRateThrottle), deliberately not locked (see above)
]

# Content-Security-Policy (django-csp): scripts, styles, images and connections from this site
# only; no inline script or style (templates pass numbers to CSS through data-vars, common.js).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Languages ---------------------------------------------------------------------------------
# English and Traditional Chinese as used in Taiwan. The language comes from the user's own choice
# (labeling.language), else the language cookie, else the browser's Accept-Language: zh-TW, zh-HK
# and a plain zh fall back to zh-hant (Django's LANG_INFO), anything else to English. Dates and
# numbers follow the active language (Django 5 always localises); the catalogues are in locale/,
# compiled by `manage.py compile_translations` (make run / make test do it).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hant", "繁體中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["feedback_site.formats"]  # zh-hant: numbers grouped by thousands, as in Taiwan
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600  # remembered for a year, like the choice stored per user
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SECURE = HTTPS_ONLY
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # also creates var/ for the SQLite file and queue
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# --- REST API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labeling.api.authentication.TokenAuthentication",  # DRF's, with the user's roles in one query
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "labeling.api.schema.AutoSchema",
    # JSON only (DRF's parser, with too-deep nesting a 400 instead of a 500): form encodings
    # cannot say a number from its digits or a boolean from "0", so the schema could not either.
    # The token endpoint also takes forms (curl -d username=… -d password=…).
    "DEFAULT_PARSER_CLASSES": ["labeling.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "EXCEPTION_HANDLER": "labeling.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"login": LOGIN_THROTTLE_RATE},
    "NUM_PROXIES": PROXY_COUNT,  # X-Forwarded-For is believed only as far as the proxies we run
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Yushan API",
    "DESCRIPTION": "Label demonstrations and rankings, and read the data they make.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request bodies get their own components (ProjectRequest…), where the server's input rules
    # are stated (labeling/api/schema.py); responses keep theirs.
    "COMPONENT_SPLIT_REQUEST": True,
    "COMPONENT_SPLIT_PATCH": False,  # the PATCH endpoints replace the whole edit: fields stay required
    # Two choice sets share the field name `kind`: a task's and a snapshot's. Name both.
    "ENUM_NAME_OVERRIDES": {
        "TaskKindEnum": ["demonstration", "ranking"],
        "SnapshotKindEnum": "training.datasets.models.DatasetSnapshot.Kind",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "labeling.api.schema.postprocess",
    ],
}

# --- Celery -----------------------------------------------------------------------------------
# Default: a filesystem broker under var/, so one machine needs no Redis. Production: redis://.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_QUEUE_DIR = VAR_DIR / "queue"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_QUEUE_DIR / "out"),
        "data_folder_out": str(_QUEUE_DIR / "out"),
        "processed_folder": str(_QUEUE_DIR / "processed"),
        "control_folder": str(_QUEUE_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600)}
)
# kombu's filesystem channel, whose messages appear in the folder only when whole (worker/broker.py).
CELERY_BROKER_TRANSPORT = "worker.broker:Transport" if CELERY_BROKER_URL.startswith("filesystem") else None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "worker.tasks.gpu_*": {"queue": "gpu"},
    "worker.tasks.interactive_*": {"queue": "interactive"},  # playground and arena, a worker of their own
}
CELERY_BEAT_SCHEDULE = {
    "return-expired-leases": {"task": "worker.tasks.leases_return_expired", "schedule": 60.0},
    "fail-stale-round-stages": {"task": "worker.tasks.rounds_fail_stale", "schedule": 60.0},
}

# --- Models and generation ---------------------------------------------------------------------
# "auto": vLLM where it is installed on a CUDA worker, else transformers (batched, left-padded).
GENERATION_BACKEND = env_str("GENERATION_BACKEND", "auto")
GENERATION_BATCH_SIZE = env_int("GENERATION_BATCH_SIZE", 32)  # sequences per forward pass
GENERATION_MAX_NEW_TOKENS = env_int("GENERATION_MAX_NEW_TOKENS", 256)
# Torch CPU threads for the gpu worker's tasks (generation and every round stage alike, so a stage
# takes as long after a generation job as in a fresh worker); 0: all cores but one, left to the
# web server and the other worker. GENERATION_CPU_THREADS is its former name.
TORCH_CPU_THREADS = env_int("TORCH_CPU_THREADS", env_int("GENERATION_CPU_THREADS", 0))
GENERATION_TIME_LIMIT_SECONDS = env_int("GENERATION_TIME_LIMIT_SECONDS", 6 * 3600)
# A running job reports every few seconds while it samples; one silent this long (longer than a
# slow model load) lost its worker and may be claimed again.
GENERATION_STALE_SECONDS = env_int("GENERATION_STALE_SECONDS", 5 * 60)
# Training rounds: a running stage whose worker has not stamped its heartbeat (every few seconds,
# from a thread) for this long died; it is marked failed and the round can be retried.
ROUND_STALE_SECONDS = env_int("ROUND_STALE_SECONDS", 5 * 60)
ROUND_STAGE_TIME_LIMIT_SECONDS = env_int("ROUND_STAGE_TIME_LIMIT_SECONDS", 24 * 3600)
# Where a round's training stages run unless the round says otherwise (its `execution` settings):
# "local", in the gpu worker's process; "torchrun", as ROUND_PROCESSES data-parallel processes on
# the worker's host (one per GPU); "ray", as ROUND_PROCESSES Ray Train workers on a Ray cluster. A
# fact of the GPU hosts, not of a labeling project, so it is set here, where the web process fills
# in a new round's settings.
ROUND_EXECUTOR = env_str("ROUND_EXECUTOR", "local")
ROUND_PROCESSES = env_int("ROUND_PROCESSES", 1)
# The ray executor: the Ray cluster's dashboard, where the Jobs API answers (the gpu worker submits
# each stage there; Ray's own client and CLI read the same variable), and the start of its jobs'
# names, one per installation sharing a cluster. The cluster's nodes mount MODEL_STORE at the same
# path as the workers, or reach the checkpoints through MODEL_STORE_URL.
RAY_ADDRESS = env_str("RAY_ADDRESS", "http://127.0.0.1:8265")
RAY_JOB_PREFIX = env_str("RAY_JOB_PREFIX", "yushan")
PLAYGROUND_MAX_NEW_TOKENS = env_int("PLAYGROUND_MAX_NEW_TOKENS", 160)
# Playground turns and arena battles each user may start (a battle is one), DRF's rate format:
# each one holds the interactive worker for seconds on CPU, so one person cannot keep it busy.
INTERACTIVE_GENERATION_RATE = env_str("INTERACTIVE_GENERATION_RATE", "6/min")
# A turn or battle not answered this long after it was asked for (no interactive worker took it, or
# its worker died) is failed, and the page says so; it is also the task's time limit.
INTERACTIVE_TIMEOUT_SECONDS = env_int("INTERACTIVE_TIMEOUT_SECONDS", 300)
# Torch CPU threads of the interactive worker: one, beside the gpu worker's all-but-one.
INTERACTIVE_CPU_THREADS = env_int("INTERACTIVE_CPU_THREADS", 1)

# --- Labeling -------------------------------------------------------------------------------
MODEL_STORE = Path(env_str("MODEL_STORE", str(VAR_DIR / "models")))  # checkpoints; web and workers share it
# An object store holding the checkpoints instead (an fsspec URL: s3://bucket/prefix, gs://…), for
# hosts and Ray nodes that share no filesystem: MODEL_STORE is then each host's cache of it
# (training.ml.store). Empty: MODEL_STORE is the store, mounted by every host that needs it.
MODEL_STORE_URL = env_str("MODEL_STORE_URL", "")
SNAPSHOT_STORE = Path(env_str("SNAPSHOT_STORE", str(VAR_DIR / "snapshots")))  # dataset snapshots, immutable
DEMONSTRATION_MAX_CHARS = env_int("DEMONSTRATION_MAX_CHARS", 20000)
SUBMISSION_EDIT_WINDOW_SECONDS = env_int("SUBMISSION_EDIT_WINDOW_SECONDS", 15 * 60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
