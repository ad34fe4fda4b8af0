from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from collection import services
from collection.models import (
    Assignment,
    Contributor,
    Dataset,
    DatasetVersion,
    GoldItem,
    QuestItem,
    XpEntry,
)


@admin.register(QuestItem)
class QuestItemAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "status", "priority", "overlap", "open_slots", "source")
    list_filter = ("type", "status")
    search_fields = ("prompt", "source")
    raw_id_fields = ("battle", "author", "reviewed")
    readonly_fields = ("status", "open_slots", "consensus")

    def save_model(self, request: HttpRequest, obj: QuestItem, form: Any, change: bool) -> None:
        if not change:  # a new item opens with every slot free
            obj.open_slots = obj.overlap
        super().save_model(request, obj, form, change)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "item", "user", "state", "leased_until", "outcome")
    list_filter = ("state",)
    raw_id_fields = ("item", "user")


@admin.register(XpEntry)
class XpEntryAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "amount", "state", "reason", "resolution", "created_at")
    list_filter = ("state", "quest_type")
    raw_id_fields = ("user", "assignment")

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False  # the ledger is append-only


@admin.register(Contributor)
class ContributorAdmin(admin.ModelAdmin):
    list_display = ("user", "leaderboard_opt_out")
    raw_id_fields = ("user",)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "sources", "steps", "licence", "created_at")


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    """Versions are frozen: they are made by the freeze (the datasets page) and never edited."""

    list_display = ("__str__", "status", "row_count", "content_hash", "frozen_at")
    list_filter = ("status", "dataset")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class GoldItemForm(forms.ModelForm):
    class Meta:
        model = GoldItem
        fields = ("name", "type", "prompt", "replies", "answer", "battle", "note", "active")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        battle = data.get("battle")
        problems = services.gold_item_check(
            type=data.get("type", ""), replies=data.get("replies"), answer=data.get("answer"),
            battle_id=battle.pk if battle is not None else None,
        )  # fmt: skip
        if problems:
            raise forms.ValidationError(problems)
        return data


@admin.register(GoldItem)
class GoldItemAdmin(admin.ModelAdmin):
    """Staff write gold items here (known answers, mixed into the quests unmarked); each person
    is served a fresh copy, so editing one changes only later copies."""

    form = GoldItemForm
    list_display = ("name", "type", "active", "note", "created_at")
    list_filter = ("type", "active")
    search_fields = ("name", "prompt", "note")
    raw_id_fields = ("battle",)
