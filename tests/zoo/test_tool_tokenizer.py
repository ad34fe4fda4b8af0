"""The tool model's tokenizer reads a number the same in a question and in a call's arguments."""

from __future__ import annotations

import random
from typing import Any

from modelhub.zoo import chat, text, tooluse


def test_it_gives_a_number_the_same_tokens_in_the_question_and_the_call() -> None:
    texts = tooluse.training_texts(0, 300)
    tools: Any = text.train_tokenizer(texts, 600, tool_calls=True)
    plain: Any = text.train_tokenizer(texts, 600)
    messages, expression = tooluse.arithmetic(random.Random(3))
    question = messages[0]["content"]
    call = tools.tokenize(chat.tool_call_text("calculator", {"expression": expression}))
    numbers = [t for t in tools.tokenize(question) if t.isdigit()]
    assert "".join(numbers) == "".join(c for c in expression if c.isdigit())
    assert all(t in call for t in numbers)  # copied token for token
    assert tools.decode(tools(question, add_special_tokens=False)["input_ids"]) == question
    # The shared tokenizer glues the space to a number: " 45" after a word, "45" after a quote.
    assert any(t.startswith("Ġ") and t[1:].isdigit() for t in plain.tokenize(question))
