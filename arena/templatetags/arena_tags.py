from django import template
from django.utils.safestring import SafeString, mark_safe

from arena.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """Sanitised HTML of a Markdown answer (see arena.rendering)."""
    return mark_safe(render_markdown(text))
