from typing import Any

from django.contrib import admin

from arena.models import ApiToken, Battle, BattleTarget, SamplingPolicy, Turn, Vote


@admin.register(Battle)
class BattleAdmin(admin.ModelAdmin):
    list_display = ["id", "mode", "model_a", "model_b", "leaked", "flagged", "created_at"]
    list_filter = ["mode", "leaked", "flagged"]
    raw_id_fields = ["user"]
    exclude = ["image"]


@admin.register(Turn)
class TurnAdmin(admin.ModelAdmin):
    list_display = ["battle", "index", "attempt", "superseded", "created_at"]
    raw_id_fields = ["battle", "generation_a", "generation_b"]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["battle", "choice", "anony", "leaked", "time_to_vote_ms", "created_at"]
    list_filter = ["choice", "anony", "leaked"]
    raw_id_fields = ["battle", "turn", "user"]


@admin.register(SamplingPolicy)
class SamplingPolicyAdmin(admin.ModelAdmin):
    list_display = ["new_model_boost", "new_model_until_votes", "target_boost"]


@admin.register(BattleTarget)
class BattleTargetAdmin(admin.ModelAdmin):
    list_display = ["model", "target_battles"]


# -- leaderboards (issue 5) -------------------------------------------------------------------

from arena.models import CategoryRule, LeaderboardSnapshot, SamplingWeights  # noqa: E402


@admin.register(CategoryRule)
class CategoryRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "pattern", "enabled", "created_at"]
    list_filter = ["enabled"]


@admin.register(LeaderboardSnapshot)
class LeaderboardSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "refreshed_at", "method", "votes_counted", "vote_hash"]
    readonly_fields = ["refreshed_at", "method", "params", "vote_hash", "votes_counted"]
    exclude = ["vote_ids", "data"]


@admin.register(SamplingWeights)
class SamplingWeightsAdmin(admin.ModelAdmin):
    list_display = ["recorded_at"]
    readonly_fields = ["policy", "weights"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff see and revoke (delete) tokens; new ones are made by their owner or `manage.py
    apitoken create`, since a token is shown only once."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", "name", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request: Any) -> bool:
        return False
