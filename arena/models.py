"""Battles (anonymous, side-by-side, direct chat), their turns and votes, and sampling policy."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from modelhub.models import Generation, Model


class Mode(models.TextChoices):
    ANONYMOUS = "anony", "Anonymous battle"
    NAMED = "named", "Side-by-side (named)"
    DIRECT = "direct", "Direct chat"


class Battle(models.Model):
    """One conversation with one (direct) or two models. The id is random: it is the only handle
    the browser gets, so it reveals nothing about the models or the order of battles."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ANONYMOUS)
    model_a = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="+")
    model_b = models.ForeignKey(
        Model, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    # Probability with which the sampler drew this unordered pair (inverse-propensity weighting).
    pair_probability = models.FloatField(null=True, blank=True)
    params = models.JSONField(default=dict, help_text="Generation parameters, same for both sides.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="arena_battles",
    )
    session_key = models.CharField(max_length=64, blank=True, db_index=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    language = models.CharField(max_length=40, blank=True)
    categories = models.JSONField(default=list, blank=True)
    # The tools both models were given (a tools-mode battle; modelhub.tools names), or none.
    tools = models.JSONField(default=list, blank=True)
    # A reply gave away a model's identity: votes are kept but excluded from ratings.
    leaked = models.BooleanField(default=False)
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=200, blank=True)
    image = models.BinaryField(null=True, blank=True, editable=False)
    image_mime = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.mode} {self.id}"

    @property
    def is_anonymous(self) -> bool:
        return self.mode == Mode.ANONYMOUS

    @property
    def has_image(self) -> bool:
        return bool(self.image_mime)


class Turn(models.Model):
    """One prompt and its answers. A regenerate adds a new attempt for the same index and marks the
    earlier one superseded: earlier answers stay in the record."""

    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField()
    attempt = models.PositiveSmallIntegerField(default=1)
    prompt = models.TextField()
    generation_a = models.OneToOneField(Generation, on_delete=models.PROTECT, related_name="+")
    generation_b = models.OneToOneField(
        Generation, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    superseded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["battle", "index", "attempt"]
        constraints = [
            models.UniqueConstraint(
                fields=["battle", "index", "attempt"], name="turn_unique_attempt"
            )
        ]

    def __str__(self) -> str:
        return f"{self.battle_id} turn {self.index}.{self.attempt}"


class Choice(models.TextChoices):
    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "bothbad", "Both are bad"
    UP = "up", "Thumbs up"
    DOWN = "down", "Thumbs down"


PAIR_CHOICES = (Choice.A, Choice.B, Choice.TIE, Choice.BOTH_BAD)
DIRECT_CHOICES = (Choice.UP, Choice.DOWN)


class Vote(models.Model):
    """One verdict on one turn attempt; the unique turn makes a second vote impossible."""

    turn = models.OneToOneField(Turn, on_delete=models.CASCADE, related_name="vote")
    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="votes")
    choice = models.CharField(max_length=10, choices=Choice.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    session_key = models.CharField(max_length=64, blank=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    # Cast while both identities were still hidden (anonymous battle, first vote).
    anony = models.BooleanField()
    leaked = models.BooleanField(default=False)
    time_to_vote_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.battle_id} {self.choice}"


class SamplingPolicy(models.Model):
    """Admin-editable pair sampling knobs (one row; the first row wins)."""

    new_model_boost = models.FloatField(default=3.0, validators=[MinValueValidator(1.0)])
    new_model_until_votes = models.PositiveIntegerField(
        default=300, help_text="A model is boosted until it has this many votes."
    )
    target_boost = models.FloatField(default=2.0, validators=[MinValueValidator(1.0)])

    class Meta:
        verbose_name_plural = "sampling policy"

    def __str__(self) -> str:
        return "Sampling policy"


class BattleTarget(models.Model):
    """A model is boosted by the policy's target_boost until it has this many battles."""

    model = models.OneToOneField(Model, on_delete=models.CASCADE, related_name="battle_target")
    target_battles = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.model} → {self.target_battles}"


# -- leaderboards (issue 5) -------------------------------------------------------------------


class CategoryRule(models.Model):
    """An admin-defined battle category: battles whose prompt matches the pattern get the name.
    Applied when a battle is stored (and on follow-ups); existing battles keep their categories."""

    name = models.SlugField(max_length=40)
    pattern = models.CharField(
        max_length=500, help_text="Regular expression, case-insensitive, searched in the prompt."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        import re

        from django.core.exceptions import ValidationError

        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValidationError({"pattern": f"Not a valid regular expression: {exc}"}) from None


class LeaderboardSnapshot(models.Model):
    """One published leaderboard: the method and parameters, the counted vote set (its ids and the
    sha256 of its battle-log export) and every board, matrix and report the page shows."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The beat refreshes every minute; an unchanged vote set only moves this time forward.
    refreshed_at = models.DateTimeField()
    method = models.CharField(max_length=10, default="bt")
    params = models.JSONField(default=dict)
    vote_hash = models.CharField(max_length=64, db_index=True)
    votes_counted = models.PositiveIntegerField(default=0)
    votes_excluded = models.JSONField(default=dict, help_text="Excluded votes per reason.")
    # Sorted ids of the counted votes, delta-encoded and zlib-compressed.
    vote_ids = models.BinaryField(editable=False)
    data = models.JSONField(default=dict)
    # A live snapshot: the last full snapshot's counts plus the counted votes since, refitted
    # (Bradley-Terry only, sandwich intervals) within seconds of a vote; the other boards are the
    # full snapshot's (data["live"] names it). Its vote_hash is empty.
    live = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"snapshot {self.pk} ({self.votes_counted} votes)"


class SamplingWeights(models.Model):
    """The pair-sampling weights in force from ``recorded_at`` until the next row (a row is stored
    when they change)."""

    recorded_at = models.DateTimeField(auto_now_add=True, db_index=True)
    policy = models.JSONField(default=dict)
    weights = models.JSONField(default=dict, help_text="model -> base, effective weight, share")

    class Meta:
        ordering = ["-recorded_at"]
        verbose_name_plural = "sampling weights"

    def __str__(self) -> str:
        return f"sampling weights {self.recorded_at:%Y-%m-%d %H:%M}"


# What a token may read through the researcher API (/api/v1/); the export endpoints need none.
API_SCOPES = ("leaderboard:read", "battles:read", "datasets:read")


def api_scopes_all() -> list[str]:
    return list(API_SCOPES)


class ApiToken(models.Model):
    """A researcher's bearer token for the export endpoints. Only the SHA-256 of the token is
    stored (tokens are 256-bit random strings, so a fast hash is enough); the token itself is shown
    once, when it is created. Deleting the row revokes it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to tell it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=api_scopes_all, help_text="Among API_SCOPES.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class HoldStatus(models.TextChoices):
    HELD = "held", "Held, waiting for review"
    CONFIRMED = "confirmed", "Held: staff confirmed the anomaly"
    RELEASED = "released", "Released: staff cleared the voter"


HELD_STATUSES = (HoldStatus.HELD, HoldStatus.CONFIRMED)


class VoterHold(models.Model):
    """A voter whose votes are held out of the published leaderboards (while ``status`` is held or
    confirmed). A voter is an account, or for anonymous votes a browser session. Written by the
    arena's leaderboard services; the anomaly scan that finds the voter lives above the arena and
    stores its evidence here for the staff who review it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    session_key = models.CharField(max_length=64, blank=True)
    judge = models.CharField(max_length=80, help_text="The voter's name in battle-log exports.")
    status = models.CharField(max_length=10, choices=HoldStatus.choices, default=HoldStatus.HELD)
    reasons = models.JSONField(default=list)
    evidence = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["judge"], name="voter_hold_one_per_judge"),
            models.CheckConstraint(
                condition=models.Q(user__isnull=False) | ~models.Q(session_key=""),
                name="voter_hold_names_a_voter",
            ),
        ]
        indexes = [models.Index(fields=["status", "session_key"], name="voter_hold_session")]

    def __str__(self) -> str:
        return f"{self.judge} ({self.status})"
