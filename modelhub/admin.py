from typing import Any

from django import forms
from django.contrib import admin

from modelhub.models import Endpoint, Generation, Model, ToolDocument
from modelhub.tools import validate_tool_names


class EndpointInline(admin.TabularInline):
    model = Endpoint
    extra = 0
    fields = ("base_url", "api_key_env", "enabled", "healthy", "last_checked_at", "last_error")
    readonly_fields = ("healthy", "last_checked_at", "last_error")


class ModelForm(forms.ModelForm):
    def clean_tools(self) -> Any:
        tools = self.cleaned_data["tools"]
        validate_tool_names(tools)
        return tools


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    form = ModelForm
    list_display = (
        "name",
        "display_name",
        "organization",
        "engine",
        "enabled",
        "arena_eligible",
        "sampling_weight",
        "heldout_loss",
        "tools",
    )
    list_filter = ("engine", "enabled", "arena_eligible", "deprecated")
    list_editable = ("enabled", "arena_eligible", "sampling_weight")
    search_fields = ("name", "display_name", "organization")
    # Set by the registry (models_load), which checks that both are vLLM models.
    readonly_fields = ("lora_base",)
    inlines = [EndpointInline]


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "model",
        "status",
        "finish_reason",
        "completion_tokens",
        "ttft_ms",
        "created_at",
    )
    list_filter = ("status", "model")
    readonly_fields = [f.name for f in Generation._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False


@admin.register(ToolDocument)
class ToolDocumentAdmin(admin.ModelAdmin):
    """The documents the search tool finds."""

    list_display = ("title", "enabled", "updated_at")
    list_filter = ("enabled",)
    list_editable = ("enabled",)
    search_fields = ("title", "text")
