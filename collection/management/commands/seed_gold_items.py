"""Add (or refresh) a starter set of gold items: questions whose right answer is known, mixed
into the quests unmarked to measure each contributor's accuracy. Idempotent: items are matched
by name. Image comparisons (an answer that ignores the image or names the wrong object) need a
battle with an image, so staff add those in the admin."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from collection import services

STARTER: list[dict[str, Any]] = [
    {
        "name": "rank-capital-of-australia",
        "type": "rank",
        "prompt": "What is the capital of Australia?",
        "replies": [
            {"key": "a", "text": "The capital of Australia is Canberra."},
            {"key": "b", "text": "The capital of Australia is Sydney, its largest city."},
        ],
        "answer": {"top": "a"},
        "note": "B states a wrong capital.",
    },
    {
        "name": "rank-boiling-point",
        "type": "rank",
        "prompt": "At what temperature does water boil at sea level, in Celsius?",
        "replies": [
            {"key": "a", "text": "Water boils at 90 °C at sea level."},
            {"key": "b", "text": "At sea level, water boils at 100 °C (212 °F)."},
        ],
        "answer": {"top": "b"},
        "note": "A gives a wrong boiling point.",
    },
    {
        "name": "rank-python-sum",
        "type": "rank",
        "prompt": "Write a Python function that returns the sum of a list of numbers.",
        "replies": [
            {"key": "a", "text": "def total(xs):\n    return sum(xs)"},
            {"key": "b", "text": "def total(xs)\n    for x in xs:\n        s += x\n    return s"},
        ],
        "answer": {"top": "a"},
        "note": "B has a syntax error and uses s before assignment.",
    },
    {
        "name": "rank-moon-landing",
        "type": "rank",
        "prompt": "In which year did people first land on the Moon?",
        "replies": [
            {"key": "a", "text": "The first crewed Moon landing was Apollo 11, in 1972."},
            {"key": "b", "text": "Apollo 11 landed the first people on the Moon in July 1969."},
            {"key": "c", "text": "Nobody has landed on the Moon."},
        ],
        "answer": {"top": "b"},
        "note": "A gives the wrong year; C is false.",
    },
    {
        "name": "label-factual-error-everest",
        "type": "label",
        "prompt": "Which is the highest mountain on Earth?",
        "replies": [{"key": "a", "text": "The highest mountain on Earth is K2, at 8,611 m."}],
        "answer": {"labels": ["factual_error"], "rating": 1},
        "note": "Everest is the highest; K2 is second.",
    },
    {
        "name": "label-code-broken-reverse",
        "type": "label",
        "prompt": "Reverse a string in JavaScript.",
        "replies": [{"key": "a", "text": "const reversed = str.reverse();"}],
        "answer": {"labels": ["code_broken"], "rating": 1},
        "note": "Strings have no reverse(); split, reverse and join are needed.",
    },
    {
        "name": "label-needless-refusal-egg",
        "type": "label",
        "prompt": "How long should I boil an egg for a soft yolk?",
        "replies": [{"key": "a", "text": "I'm sorry, but I can't help with that request."}],
        "answer": {"labels": ["refusal"], "rating": 1},
        "note": "A needless refusal of a harmless question.",
    },
    {
        "name": "label-helpful-photosynthesis",
        "type": "label",
        "prompt": "In one sentence, what is photosynthesis?",
        "replies": [
            {
                "key": "a",
                "text": "Photosynthesis is how plants use light, water and carbon dioxide to make"
                " sugar and release oxygen.",
            }
        ],
        "answer": {"labels": ["helpful"], "rating": 5},
        "note": "A correct, helpful answer.",
    },
]


class Command(BaseCommand):
    help = "Add or refresh the starter set of gold items (known answers) for the quests."

    def handle(self, *args: Any, **options: Any) -> None:
        created = 0
        for spec in STARTER:
            _item, new = services.gold_item_save(**spec)
            created += int(new)
        self.stdout.write(f"{created} gold items added, {len(STARTER) - created} refreshed")
