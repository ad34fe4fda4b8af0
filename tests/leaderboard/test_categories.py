from __future__ import annotations

import re

from arena import categories, services
from arena.models import CategoryRule
from arena.selectors import Requester
from modelhub.models import Model


def test_it_finds_the_builtin_categories_of_a_prompt() -> None:
    found = categories.prompt_categories(
        "Write a Python function that must solve x^2 + 3 = 12 step by step, without using "
        "sympy, and explain why it works.",
        has_image=True,
        language="English",
        rules=[],
    )

    assert found == ["coding", "math", "vision", "hard_prompt", "english"]
    assert categories.prompt_categories("hi", rules=[]) == []
    assert "long_query" in categories.prompt_categories("word " * 200, rules=[])


def test_it_applies_admin_rules(db: None) -> None:
    CategoryRule.objects.create(name="cooking", pattern=r"\brecipe\b")
    CategoryRule.objects.create(name="off", pattern="recipe", enabled=False)

    assert categories.prompt_categories("A recipe for bread?") == ["cooking"]
    assert categories.prompt_categories("A recipe", rules=[("x", re.compile("z"))]) == []


def test_it_computes_categories_when_a_battle_is_stored(
    board_models: list[Model],
) -> None:
    CategoryRule.objects.create(name="cooking", pattern=r"\brecipe\b")
    requester = Requester(user_id=None, session_key="s-categories")

    battle = services.battle_create(
        requester=requester, prompt="Give me a recipe and the SQL to store it in a table."
    )

    battle.refresh_from_db()
    assert "coding" in battle.categories and "cooking" in battle.categories
    assert battle.language == "English" and "english" in battle.categories


def test_it_marks_a_battle_multi_turn_on_a_follow_up(board_models: list[Model]) -> None:
    from modelhub.models import Generation, GenerationStatus

    requester = Requester(user_id=None, session_key="s-categories")
    battle = services.battle_create(requester=requester, prompt="Hello there, how are you?")
    Generation.objects.filter(model__in=board_models).update(status=GenerationStatus.DONE)

    services.battle_continue(battle=battle, requester=requester, prompt="Now prove that 1+1=2")

    battle.refresh_from_db()
    assert "multi_turn" in battle.categories and "math" in battle.categories
