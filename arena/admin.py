from django.contrib import admin

from arena.models import Battle, BattleTarget, SamplingPolicy, Turn, Vote


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
