"""Ludus settings. Everything that differs between machines comes from the environment."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from config.env import ConfigError, env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("LUDUS_DATA_DIR", str(BASE_DIR / "data")))

DEBUG = env_bool("DJANGO_DEBUG", False)
# Required, debug or not: a default written here would be a published key. `make run` makes a random
# one on first run and keeps it under the data folder (ludus_dev.dev_secret_key).
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "django_htmx",
    "template_partials",
    "modelhub",
    "arena",
    "collection",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.streaming.StreamingResponseLimit",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]


DB_POOL = env_bool("LUDUS_DB_POOL", True)
DB_POOL_MAX = env_int("LUDUS_DB_POOL_MAX", 16)
# psycopg's own preparation: parameters bound on the server (server_side_binding) and a statement a
# connection has run five times prepared there (prepare_threshold), so PostgreSQL plans the
# vote's and the claim's statements once per connection instead of on every call (measured: the
# vote statement's round trip from about 1.6 ms to 0.3-0.7 ms). Written-out SQL casts its
# parameters (`%(turn)s::bigint`): PostgreSQL types a server-bound parameter from its first use.
# Turn off (LUDUS_DB_PREPARED=0) behind a pooler that cannot keep prepared statements (PgBouncer
# in transaction mode before 1.21).
DB_PREPARED = env_bool("LUDUS_DB_PREPARED", True)
# Threads per web process that run Django's request handling (a2wsgi's pool, config.asgi); each
# holds a pooled database connection only while it queries. They share one GIL, so more threads add
# switching, not throughput: on 2 cores with two web processes, 4 threads per process took 510-542
# votes/s (bench/votes.py) against 410-442 with 8, and kept the serving bench's added first-token
# p99 at 72-140 ms against 110-294. A slow request holds one of them: scale with processes.
WEB_THREADS = env_int("LUDUS_WEB_THREADS", 4)
# Streamed responses (exports) hold a thread while their reader drains them: at most this many at
# once per process, so that the other threads keep serving (config.streaming).
STREAMING_RESPONSES_MAX = env_int("LUDUS_STREAMING_RESPONSES_MAX", max(1, WEB_THREADS // 2))
if not 0 < STREAMING_RESPONSES_MAX < WEB_THREADS:
    raise ConfigError(
        f"LUDUS_STREAMING_RESPONSES_MAX must be between 1 and LUDUS_WEB_THREADS - 1 "
        f"({WEB_THREADS - 1}), got {STREAMING_RESPONSES_MAX}"
    )
# A request body past this gets 413 before any of it is stored (config.request_body).
REQUEST_BODY_MAX = env_int("LUDUS_REQUEST_BODY_MAX_MB", 32) * 1024 * 1024


def _database_from_url(url: str) -> dict[str, object]:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got {parsed.scheme!r}")
    from urllib.parse import parse_qs

    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    host = unquote(parsed.hostname or "") or query.pop("host", "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "ludus",
        "USER": unquote(parsed.username or "") or "postgres",
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        # With psycopg's pool, a thread borrows a connection only while it queries: a Celery worker
        # streaming 256 generations on 256 threads needs a handful of connections, and no thread
        # pays for opening one (10-30 ms) on its first task.
        "CONN_MAX_AGE": 0 if DB_POOL else env_int("DATABASE_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": not DB_POOL,
        "OPTIONS": ({"server_side_binding": True, "prepare_threshold": 5} if DB_PREPARED else {})
        | query
        | ({"pool": {"min_size": 2, "max_size": DB_POOL_MAX, "timeout": 20}} if DB_POOL else {}),
        "TEST": {"NAME": env_str("DATABASE_TEST_NAME", "test_ludus")},
    }


DATABASE_URL = env_str("DATABASE_URL", "")
if not DATABASE_URL:
    raise ConfigError(
        "DATABASE_URL is not set. Use `make run` / `make test`, which start embedded PostgreSQL and "
        "Redis, or export DATABASE_URL=postgresql://... and REDIS_URL=redis://..."
    )
DATABASES = {"default": _database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
if not REDIS_URL:
    raise ConfigError("REDIS_URL is not set (see DATABASE_URL above).")
# Parallel test processes (pytest-xdist) get a Redis database each, 1 to 14, as they get a
# PostgreSQL database each, so their Celery queues and streams never cross (0 is `make run`'s, 15
# a single test process's: ludus_dev.TEST_REDIS_DB).
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist_worker.startswith("gw"):
    _parsed_redis = urlparse(REDIS_URL)
    REDIS_URL = _parsed_redis._replace(path=f"/{1 + int(_xdist_worker[2:]) % 14}").geturl()

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "ludus",
        # One pool per process, not one per request (modelhub.redis_clients says why).
        "OPTIONS": {"pool_class": "modelhub.redis_clients.ProcessConnectionPool"},
    }
}

# No CHANNEL_LAYERS: websockets get their frames from Redis Streams (modelhub.streamhub), and
# Channels gives a consumer no channel layer when none is configured.

# Celery. Generation tasks stream for at most GENERATION_TIME_LIMIT seconds, far below the Redis
# broker's visibility timeout, so an acks_late task is never handed to a second worker while alive.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
# One backend object for every thread (results are off: it is Celery's stateless DisabledBackend).
# Otherwise each new thread of a generation worker's pool builds its own on its first task, half a
# millisecond of the worker's CPU, and a burst of answers starts on new threads.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

GENERATION_TIME_LIMIT = env_int("LUDUS_GENERATION_TIME_LIMIT", 300)
GENERATION_CONNECT_TIMEOUT = env_float("LUDUS_CONNECT_TIMEOUT", 5.0)
GENERATION_READ_TIMEOUT = env_float("LUDUS_READ_TIMEOUT", 30.0)
GENERATION_COALESCE_MS = env_int("LUDUS_COALESCE_MS", 50)
# How long a thread of a Ludus process (web server, worker) may hold the GIL while another waits
# for it (Python's default is 5 ms); config.process applies it. In a generation worker the claim
# threads of a burst, the stream loop, the flusher and Celery's consumer take turns there: 1 ms cut
# the added first-token p99 of bench/serving.py by about a third, for about 3% more CPU. The web
# process's request threads (which create generations) and its event loop share a GIL the same
# way; there the bench showed no difference beyond its run-to-run noise.
SWITCH_INTERVAL_MS = env_float("LUDUS_SWITCH_INTERVAL_MS", 1.0)
if not SWITCH_INTERVAL_MS > 0:
    raise ConfigError(f"LUDUS_SWITCH_INTERVAL_MS must be above 0, got {SWITCH_INTERVAL_MS}")
# A generation whose worker stops sending heartbeats for this long is marked failed.
GENERATION_STALE_AFTER = env_float("LUDUS_GENERATION_STALE_AFTER", 20.0)
MAX_NEW_TOKENS_CAP = env_int("LUDUS_MAX_TOKENS_CAP", 1024)
# Tool use (modelhub.tools): the most tool calls a model may make in one answer, how long one call
# may run, the modules whose import registers more tools (dotted paths), and the tools an arena
# tools-mode battle gives both models (each side gets those its model has enabled in the admin).
TOOL_CALLS_PER_TURN = env_int("LUDUS_TOOL_CALLS_PER_TURN", 4)
TOOL_TIME_LIMIT = env_float("LUDUS_TOOL_TIME_LIMIT", 5.0)
TOOL_MODULES = env_list("LUDUS_TOOL_MODULES", [])
ARENA_TOOLS = env_list(
    "LUDUS_ARENA_TOOLS", ["calculator", "convert", "date", "search", "crop_image"]
)
HEALTH_PROBE_INTERVAL = env_float("LUDUS_HEALTH_PROBE_INTERVAL", 5.0)
MODELS_DIR = Path(env_str("LUDUS_MODELS_DIR", str(DATA_DIR / "models")))
LOCAL_ENGINE_URL = env_str("LUDUS_LOCAL_ENGINE_URL", "http://127.0.0.1:8100/v1")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# `collectstatic` (run by make run and make test) writes content-hashed copies and their gzip
# variants here; config.asgi serves them with ServeStatic, hashed names as immutable.
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = DATA_DIR / "media"

# Security defaults. Cookies are secure unless the operator serves plain HTTP locally (make run).
SECURE_COOKIES = env_bool("LUDUS_SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
# Strict-Transport-Security while cookies are secure (SecurityMiddleware sends it on answers over
# TLS, or X-Forwarded-Proto https behind a trusted proxy): browsers then refuse plain HTTP to this
# host for that many seconds. 0 sends none.
SECURE_HSTS_SECONDS = env_int("LUDUS_HSTS_SECONDS", 31_536_000 if SECURE_COOKIES else 0)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp; Django 6 has it built in). Scripts only from our own static
# files: no inline script, no on* handlers, no eval, so that markup slipping past the Markdown
# sanitiser cannot run. Styles allow 'unsafe-inline': the arena and leaderboard pages inline their
# stylesheets (no render-blocking request), KaTeX lays formulas out with style attributes, and
# sanitised answers keep text-align on table cells; CSS cannot run script. img-src allows data:
# for the arena page's empty favicon ("data:,"); answers carry no <img> (arena.rendering).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],  # includes the same origin's ws:// and wss:// (CSP level 3)
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Behind a reverse proxy, the client's address and scheme come from X-Forwarded-For/-Proto, and
# only when the peer is one of LUDUS_TRUSTED_PROXIES (config.asgi); otherwise nobody's are believed.
BEHIND_PROXY = env_bool("LUDUS_BEHIND_PROXY", False)
TRUSTED_PROXIES = env_list("LUDUS_TRUSTED_PROXIES", ["127.0.0.1", "::1"])
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LUDUS_LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
METRICS_TOKEN = env_str("LUDUS_METRICS_TOKEN", "")
LUDUS_REQUIRED_QUEUES = env_list(
    "LUDUS_REQUIRED_QUEUES", ["default", "pipeline", "gen.local", "gen.openai", "gen.vllm"]
)

# Leaderboard: models with fewer counted votes are shown apart as provisional, without a rank;
# "both bad" counts as a tie, is left out, or gets its own Davidson tie parameter.
LEADERBOARD_MIN_VOTES = env_int("LUDUS_LEADERBOARD_MIN_VOTES", 300)
LEADERBOARD_BOTHBAD = env_str("LUDUS_LEADERBOARD_BOTHBAD", "tie")
if LEADERBOARD_MIN_VOTES < 0:
    raise ConfigError(f"LUDUS_LEADERBOARD_MIN_VOTES must be 0 or more, got {LEADERBOARD_MIN_VOTES}")
if LEADERBOARD_BOTHBAD not in ("tie", "exclude", "davidson"):
    raise ConfigError(
        f"LUDUS_LEADERBOARD_BOTHBAD must be tie, exclude or davidson, got {LEADERBOARD_BOTHBAD!r}"
    )

# Arena rate limits, per minute (0 or less: no limit).
ARENA_BATTLES_PER_MINUTE = env_int("LUDUS_ARENA_BATTLES_PER_MINUTE", 20)
ARENA_BATTLES_PER_MINUTE_PER_IP = env_int("LUDUS_ARENA_BATTLES_PER_MINUTE_PER_IP", 60)
# Images decoded at once per web process (each up to images.MAX_PIXELS, about 75-100 MB), and how
# long a request waits for a turn before it gets 503.
ARENA_IMAGE_DECODES = env_int("LUDUS_ARENA_IMAGE_DECODES", 2)
ARENA_IMAGE_DECODE_WAIT_S = env_float("LUDUS_ARENA_IMAGE_DECODE_WAIT_S", 2.0)
ARENA_VOTES_PER_MINUTE = env_int("LUDUS_ARENA_VOTES_PER_MINUTE", 60)
ARENA_VOTES_PER_MINUTE_PER_IP = env_int("LUDUS_ARENA_VOTES_PER_MINUTE_PER_IP", 600)
# Daily vote budget per account (or browser session), counted from midnight UTC (0: no budget).
ARENA_VOTES_PER_DAY = env_int("LUDUS_ARENA_VOTES_PER_DAY", 500)
ARENA_EXPORTS_PER_MINUTE = env_int("LUDUS_ARENA_EXPORTS_PER_MINUTE", 30)
ARENA_EXPORTS_PER_MINUTE_PER_IP = env_int("LUDUS_ARENA_EXPORTS_PER_MINUTE_PER_IP", 60)
# Log-in and sign-up attempts per minute, per client address and per username tried.
AUTH_ATTEMPTS_PER_MINUTE_PER_IP = env_int("LUDUS_AUTH_ATTEMPTS_PER_MINUTE_PER_IP", 30)
AUTH_ATTEMPTS_PER_MINUTE_PER_USERNAME = env_int("LUDUS_AUTH_ATTEMPTS_PER_MINUTE_PER_USERNAME", 10)


# Quest quality control: the share of served items that are gold items (known answers), how many a
# new contributor answers first, the reliability below which settled XP is held, and the daily
# budget of quest answers per contributor (0: no budget).
def _env_fraction(name: str, default: float) -> float:
    value = env_float(name, default)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, got {value}")
    return value


def _env_count(name: str, default: int) -> int:
    value = env_int(name, default)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value}")
    return value


QUEST_GOLD_RATE = _env_fraction("LUDUS_QUEST_GOLD_RATE", 0.1)
QUEST_ONBOARDING_GOLD = _env_count("LUDUS_QUEST_ONBOARDING_GOLD", 3)
QUEST_RELIABILITY_MIN = _env_fraction("LUDUS_QUEST_RELIABILITY_MIN", 0.6)
QUEST_ANSWERS_PER_DAY = _env_count("LUDUS_QUEST_ANSWERS_PER_DAY", 200)
# The anomaly scan also holds an account's arena votes out of the boards when its stored
# reliability is below this bar (0: never), once the estimate rests on this many answers and votes.
HOLD_RELIABILITY_BELOW = _env_fraction("LUDUS_HOLD_RELIABILITY_BELOW", 0.35)
HOLD_RELIABILITY_MIN_ANSWERS = _env_count("LUDUS_HOLD_RELIABILITY_MIN_ANSWERS", 30)
# The curators' moderation scan queues a battle whose prompt or an answer scores this or more on
# the offensive-language model (the pipeline's toxicity step uses the same model).
REVIEW_OFFENSIVE_THRESHOLD = _env_fraction("LUDUS_REVIEW_OFFENSIVE_THRESHOLD", 0.8)


# Fine-tuning jobs: a job whose judge win rate against its base reaches this is promoted into the
# arena without staff (0: staff promote every model).
FINETUNE_PROMOTE_WIN_RATE = _env_fraction("LUDUS_FINETUNE_PROMOTE_WIN_RATE", 0.0)
