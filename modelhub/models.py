"""Models, their endpoints, and generations (one streamed reply from one model)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


def validate_base_url(value: str) -> None:
    """http(s)://host[:port][/path]; unlike URLField, cluster host names without a TLD are fine."""
    parsed = urlparse(value)
    if (
        parsed.scheme not in {"http", "https"}
        or not parsed.hostname
        or parsed.query
        or parsed.fragment
    ):
        raise ValidationError("Enter an http(s) base URL such as http://gpu-1:8000/v1.")


API_KEY_ENV_PREFIX = "LUDUS_KEY_"
_API_KEY_ENV = re.compile(r"LUDUS_KEY_[A-Z0-9_]+")


def api_key_env_allowed(name: str) -> bool:
    """Whether an endpoint may read its API key from the environment variable `name`. Only names
    made for it (LUDUS_KEY_...) qualify: the key is sent as a bearer token to the endpoint's
    base URL, which a staff member types, so no other variable of the process (the signing key,
    the database URL, another service's key) can be named and sent away."""
    return bool(_API_KEY_ENV.fullmatch(name))


def validate_api_key_env(value: str) -> None:
    if value and not api_key_env_allowed(value):
        raise ValidationError(
            f"Name an environment variable that starts with {API_KEY_ENV_PREFIX} (capitals, "
            f"digits and underscores), such as {API_KEY_ENV_PREFIX}OPENAI."
        )


class Engine(models.TextChoices):
    VLLM = "vllm", "vLLM"
    OPENAI = "openai", "OpenAI-compatible"
    LOCAL = "local", "Ludus local engine"


class Modality(models.TextChoices):
    TEXT = "text", "Text"
    IMAGE = "image", "Image"


def default_modalities() -> list[str]:
    return [Modality.TEXT]


class Model(models.Model):
    name = models.SlugField(
        max_length=100,
        unique=True,
        help_text="Stable identifier; also the name sent upstream unless served_name is set.",
    )
    display_name = models.CharField(max_length=200, blank=True)
    organization = models.CharField(max_length=200, blank=True)
    license = models.CharField(max_length=100, blank=True)
    modalities = ArrayField(
        models.CharField(max_length=10, choices=Modality.choices), default=default_modalities
    )
    engine = models.CharField(max_length=10, choices=Engine.choices, default=Engine.OPENAI)
    served_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="Model name the endpoint expects, if different from name.",
    )
    queue = models.CharField(
        max_length=100,
        blank=True,
        help_text="Celery queue for this model's generations; default gen.<engine>.",
    )
    sampling_weight = models.FloatField(default=1.0, validators=[MinValueValidator(0.0)])
    max_concurrency = models.PositiveIntegerField(default=16)
    arena_eligible = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    deprecated = models.BooleanField(default=False)
    # Generation defaults.
    temperature = models.FloatField(default=0.7, validators=[MinValueValidator(0.0)])
    top_p = models.FloatField(default=1.0)
    max_tokens = models.PositiveIntegerField(default=512)
    system_prompt = models.TextField(blank=True)
    # Engines that Ludus starts itself (local, vllm) load the model from this directory.
    path = models.CharField(max_length=500, blank=True)
    tensor_parallel_size = models.PositiveSmallIntegerField(default=1)
    max_model_len = models.PositiveIntegerField(null=True, blank=True)
    limit_images_per_prompt = models.PositiveSmallIntegerField(default=1)
    # Quality measured by the build (demo zoo) or the fine-tuning job: lower is better.
    heldout_loss = models.FloatField(null=True, blank=True)
    # Phrases by which a reply gives away this model's identity (leak detection). Lowercased.
    identity_patterns = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    # Tools this model may be given (modelhub.tools names); a request offers some of them. The
    # names are checked against the tool registry where they are written (the registry service
    # and the admin), since the registry's tools read these tables.
    tools = ArrayField(
        models.CharField(max_length=50),
        default=list,
        blank=True,
        help_text="Tools it may call, comma separated: calculator, convert, date, search, "
        "crop_image (vision models).",
    )
    # vLLM's parser of this model's tool-call format (hermes, llama3_json, mistral, ...): the
    # supervisor starts vLLM with --enable-auto-tool-choice --tool-call-parser <it>.
    tool_call_parser = models.CharField(max_length=50, blank=True)
    # Where the model came from, shown as a link on its leaderboard row: a fine-tuned model's job
    # page and dataset version (written by the app that made it; modelhub only stores it).
    source_url = models.CharField(max_length=500, blank=True)
    source_label = models.CharField(max_length=300, blank=True)
    # A LoRA adapter that vLLM serves beside its base: path is the adapter's directory (PEFT
    # format), the endpoints are the base's servers, and the supervisor starts the base's vLLM
    # with every adapter of it (--enable-lora --lora-modules), so a restart keeps serving them.
    lora_base = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="lora_adapters",
        help_text="For a LoRA adapter served by vLLM: the base model whose servers load it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        return self.display_name or self.name

    def files(self, models_dir: Path | None = None) -> Path:
        """Where the model's files lie: its path (its name when it has none), relative to the
        models directory (settings.MODELS_DIR unless given) unless absolute."""
        path = Path(self.path or self.name)
        return path if path.is_absolute() else Path(models_dir or settings.MODELS_DIR) / path

    @property
    def upstream_name(self) -> str:
        return self.served_name or self.name

    @property
    def supports_images(self) -> bool:
        return Modality.IMAGE in self.modalities

    @property
    def generation_queue(self) -> str:
        return self.queue or f"gen.{self.engine}"


class Endpoint(models.Model):
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="endpoints")
    base_url = models.CharField(
        max_length=500,
        validators=[validate_base_url],
        help_text="OpenAI-compatible base URL, e.g. http://host:8000/v1",
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_api_key_env],
        help_text="Name of the environment variable holding the API key, starting with "
        "LUDUS_KEY_. The key itself is never stored.",
    )
    enabled = models.BooleanField(default=True)
    # Health, written by the probe task and by generations that fail.
    healthy = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["model__name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "base_url"], name="endpoint_unique_per_model")
        ]

    def __str__(self) -> str:
        return f"{self.model.name} @ {self.base_url}"


class GenerationStatus(models.TextChoices):
    QUEUED = "queued"
    STREAMING = "streaming"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = (GenerationStatus.DONE, GenerationStatus.ERROR, GenerationStatus.CANCELLED)


class Generation(models.Model):
    """One reply from one model. The id is random: it is what browsers subscribe to."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="generations")
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.SET_NULL, null=True, blank=True, related_name="generations"
    )
    # Who may watch it stream: a signed-in user or an anonymous session.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    session_key = models.CharField(max_length=64, blank=True)
    messages = models.JSONField(
        help_text="OpenAI chat messages sent upstream (system prompt included)."
    )
    params = models.JSONField(default=dict, help_text="temperature, top_p, max_tokens, seed")
    tools = models.JSONField(default=list, blank=True, help_text="Names of the tools offered.")
    # One entry per call the model made, in order: {"call": "call_<n>", "name", "arguments" (as
    # sent), "result", "error", "duration_ms"}.
    tool_calls = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=10,
        choices=GenerationStatus.choices,
        default=GenerationStatus.QUEUED,
    )
    text = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=30, blank=True)
    error = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # An answer's row is written at its start, every HEARTBEAT_EVERY_S while it streams, and
        # at its end, hundreds at once in a burst: each index is a write more on every change of
        # its columns. So plain btrees only (no LIKE twins), and heartbeat_at in none, which
        # lets a heartbeat update its row in place (a HOT update, with room on the page that the
        # table's fillfactor keeps, migration 0004) instead of adding an entry to every index. The
        # reaper finds stale answers by status (few are queued or streaming at any time).
        indexes = [
            models.Index(fields=["status"], name="generation_status_idx"),
            models.Index(fields=["session_key"], name="generation_session_idx"),
            # In-flight counts per endpoint (every claim, /metrics) read the answers streaming
            # now, not every answer an endpoint ever gave.
            models.Index(
                fields=["endpoint"],
                condition=models.Q(status="streaming"),
                name="generation_streaming_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} {self.id} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class ToolDocument(models.Model):
    """A document the search tool finds (admins load and edit them)."""

    title = models.CharField(max_length=300)
    text = models.TextField()
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class ToolCallEvaluation(models.Model):
    """One run of the function-calling evaluation (modelhub.zoo.toolcheck) against a model's
    endpoint: the share of the test set's cases whose calls matched the expected ones on name and
    arguments. The latest run per model is its score on the tools leaderboard."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="tool_call_evaluations")
    accuracy = models.FloatField()
    cases = models.PositiveIntegerField()
    by_category = models.JSONField(default=dict)
    called_by_category = models.JSONField(default=dict)
    # The test set file's digest: scores are comparable when it is the same.
    test_set_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model", "-created_at"], name="toolcall_eval_latest")]

    def __str__(self) -> str:
        return f"{self.model.name} {self.accuracy:.1%} of {self.cases}"
