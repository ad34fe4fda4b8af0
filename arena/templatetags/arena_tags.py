from django import template
from django.utils.safestring import SafeString, mark_safe

from arena.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """Sanitised HTML of a Markdown answer (see arena.rendering)."""
    return mark_safe(render_markdown(text))


@register.filter
def tool_arguments(arguments: str) -> str:
    """A stored call's arguments as its stream frame showed them (modelhub.tools)."""
    from modelhub.tools import arguments_shown

    return arguments_shown(arguments)


@register.filter
def stream_token(generation_id: object) -> str:
    """Signed token that lets the page's socket watch this generation without a session lookup."""
    from modelhub.streams import stream_token as sign

    return sign(str(generation_id))
