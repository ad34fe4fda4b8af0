"""Contributors, quests and the XP ledger.

A quest item is one piece of work (replies to rank or label, a prompt needing a reference answer,
a reference answer to review) that wants `overlap` answers from different people. Each person's
claim on it is an Assignment with a lease; `open_slots` counts what is still free (overlap minus
live leases and submissions) and `status` is OPEN exactly while a slot is free, so the router reads
one partial index. The ledger is append-only: an entry's state moves pending -> settled or
pending -> reversed, never back, and its amount never changes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class QuestType(models.TextChoices):
    RANK = "rank", "Rank replies"
    LABEL = "label", "Label a reply"
    REFERENCE = "reference", "Write a reference answer"
    IMAGE = "image", "Compare with an image"
    REVIEW = "review", "Review a reference answer"


class QuestFocus(models.TextChoices):
    GENERAL = "", "General"
    TOOLS = "tools", "Tool use"


class ItemStatus(models.TextChoices):
    OPEN = "open", "Open (a slot is free)"
    FULL = "full", "Full (every slot leased or answered)"
    DONE = "done", "Done (overlap reached)"
    CLOSED = "closed", "Closed by staff"


class QuestItem(models.Model):
    type = models.CharField(max_length=10, choices=QuestType.choices)
    status = models.CharField(max_length=6, choices=ItemStatus.choices, default=ItemStatus.OPEN)
    # Higher first within a type (disputed battles, items close to consensus).
    priority = models.SmallIntegerField(default=0)
    overlap = models.PositiveSmallIntegerField(default=3)
    open_slots = models.PositiveSmallIntegerField()
    prompt = models.TextField()
    # rank/image: [{"key", "text"}] 2-4 replies; label: one reply; reference: none; review: the
    # answer under review.
    replies = models.JSONField(default=list, blank=True)
    # The battle this came from (its image for image quests); the arena never learns of it.
    battle = models.ForeignKey(
        "arena.Battle", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Whose work this is (the battle's owner, a reference answer's writer): never routed to them.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # For review items: the reference answer under review.
    reviewed = models.ForeignKey(
        "Assignment", on_delete=models.CASCADE, null=True, blank=True, related_name="reviews"
    )
    source = models.CharField(max_length=80, blank=True, help_text="Its origin, e.g. vote:12:a")
    # What the item asks about, within its type: blank for the general question, "tools" for a
    # tools battle's replies (their calls and results shown; tool-use labels). The quest page
    # shows each focus as its own card and the router can be asked for one.
    focus = models.CharField(max_length=10, choices=QuestFocus.choices, blank=True, default="")
    consensus = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The router: the best open item of a type, by a short index walk.
            models.Index(
                fields=["type", "-priority", "id"],
                name="quest_item_router",
                condition=Q(status="open"),
            ),
            # The router asked for one focus: the same walk over the few focused items.
            models.Index(
                fields=["type", "focus", "-priority", "id"],
                name="quest_item_router_focus",
                condition=Q(status="open") & ~Q(focus=""),
            ),
        ]
        constraints = [
            # One item per origin (a vote's reply, a reference answer): spawning is idempotent.
            models.UniqueConstraint(
                fields=["source"], name="quest_item_once_per_source", condition=~Q(source="")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"


class AssignmentState(models.TextChoices):
    LEASED = "leased", "Leased"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Lease expired"


class Assignment(models.Model):
    """One person's claim on one item: at most one per person and item, ever (a skip or an expired
    lease is remembered so the router does not offer the item again)."""

    item = models.ForeignKey(QuestItem, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quest_assignments"
    )
    state = models.CharField(
        max_length=10, choices=AssignmentState.choices, default=AssignmentState.LEASED
    )
    leased_until = models.DateTimeField()
    answer = models.JSONField(null=True, blank=True)
    # What became of it, in words the profile shows ("accepted by review", "ranked first by 3").
    outcome = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "user"], name="assignment_once_per_user"),
        ]
        indexes = [
            models.Index(
                fields=["leased_until"], name="assignment_live_lease", condition=Q(state="leased")
            ),
            models.Index(fields=["user", "-created_at"], name="assignment_by_user"),
            # A user's live leases (at most one per type): the router resumes them first.
            models.Index(
                fields=["user"], name="assignment_leased_by_user", condition=Q(state="leased")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.item_id}: {self.state}"


class Draft(models.Model):
    """A written answer as it is being typed, one per person and item."""

    item = models.ForeignKey(QuestItem, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    text = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "user"], name="draft_once_per_user"),
        ]

    def __str__(self) -> str:
        return f"draft of {self.user_id} on {self.item_id}"


class XpState(models.TextChoices):
    PENDING = "pending", "Pending"
    SETTLED = "settled", "Settled"
    REVERSED = "reversed", "Reversed"


class XpEntry(models.Model):
    """One line of the append-only ledger. `key` makes posting idempotent (one entry per
    assignment, per daily goal and day...)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    amount = models.IntegerField()
    reason = models.CharField(max_length=200)
    state = models.CharField(max_length=8, choices=XpState.choices)
    # Why it settled or was reversed.
    resolution = models.CharField(max_length=200, blank=True)
    quest_type = models.CharField(max_length=10, choices=QuestType.choices, blank=True)
    assignment = models.ForeignKey(
        Assignment, on_delete=models.SET_NULL, null=True, blank=True, related_name="xp"
    )
    key = models.CharField(max_length=80, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created_at"], name="xp_by_user"),
            models.Index(
                fields=["created_at"], name="xp_settled_by_time", condition=Q(state="settled")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.amount:+d} {self.state}: {self.reason}"


class Contributor(models.Model):
    """A contributor's choices about the game (created on first need)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contributor"
    )
    leaderboard_opt_out = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"contributor {self.user_id}"


# -- datasets ---------------------------------------------------------------------------------


class DatasetSource(models.TextChoices):
    BATTLES = "battles", "Arena battles (pairwise votes)"
    DIRECT = "direct", "Direct chats (thumbs up/down)"
    QUESTS = "quests", "Quest results (accepted reference answers, ranked replies)"
    SYNTHETIC = "synthetic", "Synthetic rows (augmentations of frozen versions)"


class Dataset(models.Model):
    """What a dataset is made of: its sources and its pipeline steps with their parameters. Each
    freeze makes a new immutable DatasetVersion; editing the dataset changes only later ones."""

    name = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    sources = models.JSONField(default=list, help_text='e.g. ["battles", "direct"]')
    steps = models.JSONField(default=list, help_text='Pipeline steps in order, e.g. ["pii"]')
    params = models.JSONField(default=dict, blank=True, help_text='e.g. {"neardup": {...}}')
    licence = models.CharField(max_length=40, default="CC-BY-4.0")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VersionStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Freezing"
    DONE = "done", "Frozen"
    FAILED = "failed", "Failed"


class DatasetVersion(models.Model):
    """A frozen dataset: the manifest that made it (sources, cut-off time, steps and parameters,
    code version), the pipeline's report, its rows and their content hash, and a datasheet. Written
    once by the freeze service; nothing changes it afterwards."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(
        max_length=8, choices=VersionStatus.choices, default=VersionStatus.PENDING
    )
    manifest = models.JSONField(default=dict)
    report = models.JSONField(default=dict, help_text="Per step: rows in/out, counts per reason.")
    rows_read = models.PositiveIntegerField(default=0)
    row_count = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64, blank=True)
    datasheet = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    frozen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"


class DatasetRow(models.Model):
    """One row of a frozen version, in pipeline order. ``source_key`` names what it came from
    (``battle:<id>``) so that an account's deletion can revoke it."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="rows")
    position = models.PositiveIntegerField()
    source_key = models.CharField(max_length=80, db_index=True)
    data = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="dataset_row_position")
        ]

    def __str__(self) -> str:
        return f"{self.version_id}:{self.position} {self.source_key}"


class RevokedSource(models.Model):
    """A source taken out of every dataset because its author deleted their account: later
    versions never read it, and downloads of earlier ones leave its rows out."""

    key = models.CharField(max_length=80, unique=True)
    revoked_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class ReviewKind(models.TextChoices):
    REPORT = "report", "Reported by a user"
    LEAK = "leak", "Identity leak"
    AGREEMENT = "agreement", "Low agreement"
    MODERATION = "moderation", "Offensive language"


class ReviewStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected (left out of datasets)"


class ReviewItem(models.Model):
    """A source waiting for a curator's decision before datasets use it as it is; a rejected one is
    left out of every later dataset version. Its decisions are kept in ReviewAction."""

    source_key = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=10, choices=ReviewKind.choices)
    reason = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.PENDING, db_index=True
    )
    # Curators' redactions and edits, in order: [{"find": passage, "replace": text}], applied to
    # every text of the source when a dataset reads it (the arena keeps what was said).
    edits = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.source_key} ({self.status})"


class ReviewActionKind(models.TextChoices):
    DECIDE = "decide", "Decided"
    REDACT = "redact", "Redacted"
    EDIT = "edit", "Edited"


class ReviewAction(models.Model):
    """One decision on a review item, append-only: the item's history."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="actions")
    action = models.CharField(
        max_length=8, choices=ReviewActionKind.choices, default=ReviewActionKind.DECIDE
    )
    # The item's status after the action.
    status = models.CharField(max_length=10, choices=ReviewStatus.choices)
    # What a redaction or an edit changed: an edit keeps the passage and its replacement; a
    # redaction keeps only the passage's length and SHA-256, so the history leaks nothing.
    change = models.JSONField(default=dict, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.item_id} -> {self.status}"


# -- fine-tuning jobs -------------------------------------------------------------------------


class TrainMethod(models.TextChoices):
    SFT = "sft", "Supervised fine-tuning (SFT)"
    DPO = "dpo", "Direct preference optimisation (DPO)"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Training"
    EVALUATING = "evaluating", "Evaluating"
    DONE = "done", "Trained and evaluated"
    PROMOTED = "promoted", "Promoted into the arena"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class FinetuneJob(models.Model):
    """A fine-tuning run of a base model on a frozen dataset version (SFT or DPO, full or LoRA),
    its progress, its outputs (model or adapter, log, model card, under ``output_dir``), its
    evaluation gate (held-out loss before and after, judge verdicts) and, once promoted, the hub
    model it became."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="jobs")
    method = models.CharField(max_length=3, choices=TrainMethod.choices)
    # The base: a hub model (its local directory) or any local Hugging Face directory.
    base_model = models.ForeignKey(
        "modelhub.Model", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    base_path = models.CharField(max_length=500, blank=True)
    judge_model = models.ForeignKey(
        "modelhub.Model", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    hyperparameters = models.JSONField(default=dict)
    seed = models.IntegerField(default=0)
    state = models.CharField(
        max_length=10, choices=JobState.choices, default=JobState.QUEUED, db_index=True
    )
    step = models.PositiveIntegerField(default=0)
    max_steps = models.PositiveIntegerField(default=0)
    # [[step, loss], ...] in order: the live loss curve.
    loss_history = models.JSONField(default=list, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    resumed_from_step = models.PositiveIntegerField(null=True, blank=True)
    output_dir = models.CharField(max_length=500, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    promoted_model = models.ForeignKey(
        "modelhub.Model", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"job {self.id} {self.method} on {self.version_id} ({self.state})"


class JudgeVerdict(models.Model):
    """One judge verdict of the evaluation gate: a held-out prompt, the two replies in the order
    the judge saw them, and which it preferred (``a``, ``b`` or ``tie``) with its probabilities."""

    job = models.ForeignKey(FinetuneJob, on_delete=models.CASCADE, related_name="verdicts")
    prompt = models.TextField()
    # Which model stood first: "new" (the fine-tuned model as A) or "base".
    first = models.CharField(max_length=4)
    reply_a = models.TextField()
    reply_b = models.TextField()
    verdict = models.CharField(max_length=3)
    p_a = models.FloatField()
    p_b = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.job_id}: {self.verdict} ({self.first} first)"


# -- curators' saved filters --------------------------------------------------------------------


class SavedReviewFilter(models.Model):
    """A named view of the review queue (status, kind, text), kept per staff user."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_filters"
    )
    name = models.CharField(max_length=60)
    params = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="review_filter_name_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.user_id})"


# -- quality control: gold items, reliabilities, held XP -------------------------------------------


GOLD_TYPES = ("rank", "image", "label")


class GoldItem(models.Model):
    """An item whose right answer staff know (a reply with a planted factual error, an answer that
    ignores the image, broken code; a label that must be given). Never routed as it is: each time
    the router picks one for a contributor it makes a fresh QuestItem copy (GoldCopy), so a gold
    item looks like any other on the page, with an ID from the same sequence, once per person.

    ``answer``: rank and image quests ``{"top": "<reply key>"}`` (or ``{"all_bad": true}``); label
    quests ``{"labels": [...], "rating": 1-5}``: right when every listed label is given and the
    rating is within one of it."""

    type = models.CharField(max_length=10, choices=[(t, QuestType(t).label) for t in GOLD_TYPES])
    prompt = models.TextField()
    replies = models.JSONField(default=list, help_text='[{"key": "a", "text": "..."}, ...]')
    # Image quests: the battle whose image the replies describe.
    battle = models.ForeignKey(
        "arena.Battle", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    answer = models.JSONField(
        help_text='{"top": "b"} or {"labels": ["factual_error"], "rating": 1}'
    )
    note = models.CharField(max_length=200, blank=True, help_text="What is planted (staff only).")
    name = models.SlugField(max_length=80, unique=True, help_text="A stable name (seeding).")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"gold {self.type} {self.name}"


class GoldCopy(models.Model):
    """The copy of a gold item served to one contributor, and whether they got it right (null
    until they answer). The copy's QuestItem is CLOSED from the start, so the router never offers
    it to anyone else, and a skipped or expired lease gives no slot back."""

    item = models.OneToOneField(QuestItem, on_delete=models.CASCADE, related_name="gold_copy")
    gold = models.ForeignKey(GoldItem, on_delete=models.CASCADE, related_name="copies")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The gold answer in this copy's reply keys (the copy shuffles the replies).
    answer = models.JSONField()
    right = models.BooleanField(null=True, blank=True)
    # Whether the refresh has settled or reversed its XP yet.
    resolved = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["gold", "user"], name="gold_copy_once_per_user"),
        ]
        indexes = [
            models.Index(fields=["user"], name="gold_copy_unresolved", condition=Q(resolved=False)),
        ]

    def __str__(self) -> str:
        return f"{self.gold_id} for {self.user_id}: {self.right}"


class Reliability(models.Model):
    """One contributor's reliability: the chance their answer agrees with the truth, estimated
    from gold items and agreement with others (Crowd-BT on rankings, Dawid-Skene on labels), and
    Krippendorff's alpha of the items they answered. Rewritten by each refresh."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reliability"
    )
    value = models.FloatField()
    gold_answered = models.PositiveIntegerField(default=0)
    gold_right = models.PositiveIntegerField(default=0)
    rankings = models.PositiveIntegerField(default=0)
    labels = models.PositiveIntegerField(default=0)
    # Counted arena votes of the period read (agreement with the board's model, Crowd-BT).
    votes = models.PositiveIntegerField(default=0)
    alpha = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.value:.2f}"


class XpHold(models.Model):
    """XP that consensus or a gold check would settle, held pending while its owner's reliability
    is below the bar; the refresh settles it once the reliability clears the bar."""

    entry = models.OneToOneField(XpEntry, on_delete=models.CASCADE, related_name="hold")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    resolution = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"hold on {self.entry_id}"


# -- sharded pipeline runs and augmentation ---------------------------------------------------


class DatasetRun(models.Model):
    """How a version's freeze is split: the stages of its pipeline (collection.pipeline.shards),
    the stage being worked on, and the rows per shard. Its shards hold each stage's results, so a
    freeze interrupted mid-way goes on from the shards already done."""

    version = models.OneToOneField(DatasetVersion, on_delete=models.CASCADE, related_name="run")
    shard_rows = models.PositiveIntegerField(default=2000)
    shard_count = models.PositiveIntegerField(default=0)
    stages = models.JSONField(default=list)
    stage = models.PositiveIntegerField(default=0, help_text="0: the sources are not read yet")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"run of {self.version_id}: stage {self.stage}/{len(self.stages)}"


class DatasetShard(models.Model):
    """One shard's result for one stage: its kept rows, the keys of the stage's global step and
    (after the global pass) the drops the next stage applies, and per-step counts. Stage 0 holds
    the rows read from the sources. ``runs`` counts how many times a worker finished it (one)."""

    run = models.ForeignKey(DatasetRun, on_delete=models.CASCADE, related_name="shards")
    stage = models.PositiveIntegerField()
    index = models.PositiveIntegerField()
    done = models.BooleanField(default=False)
    runs = models.PositiveIntegerField(default=0)
    rows_in = models.PositiveIntegerField(default=0)
    rows_out = models.PositiveIntegerField(default=0)
    rows = models.JSONField(default=list)
    keys = models.JSONField(null=True, blank=True)
    drops = models.JSONField(default=dict)
    stats = models.JSONField(default=dict)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "stage", "index"], name="dataset_shard_unique")
        ]

    def __str__(self) -> str:
        return f"{self.run_id} stage {self.stage} shard {self.index}"


class AugmentationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Augmentation(models.Model):
    """Synthetic rows made from a frozen version through the serving pool: paraphrased prompts,
    replies from other models, and an LLM judge's pairwise labels (both orders)."""

    version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="augmentations"
    )
    kinds = models.JSONField(default=list, help_text="paraphrase, replies, judge")
    paraphrase_model = models.CharField(max_length=100, blank=True)
    reply_models = models.JSONField(default=list)
    judge_model = models.CharField(max_length=100, blank=True)
    limit = models.PositiveIntegerField(default=100, help_text="source rows read, at most")
    status = models.CharField(
        max_length=10, choices=AugmentationStatus.choices, default=AugmentationStatus.PENDING
    )
    error = models.TextField(blank=True)
    counts = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"augmentation {self.id} of {self.version_id}"


class AugmentedRow(models.Model):
    """One synthetic row; ``data["synthetic"]`` names the model, the prompt and the generation
    that made it, and the source row it came from."""

    augmentation = models.ForeignKey(Augmentation, on_delete=models.CASCADE, related_name="rows")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=20)
    data = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["augmentation", "position"], name="augmented_row_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.augmentation_id}:{self.position} {self.kind}"
