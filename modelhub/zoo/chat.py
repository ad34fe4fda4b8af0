"""The zoo's chat format, shared by training (Python rendering) and serving (Jinja template).

A conversation renders as::

    <|system|>\\nYou are ...<|end|>\\n<|user|>\\nHi<|end|>\\n<|assistant|>\\nHello!<|end|>\\n

``<|end|>`` is the end-of-turn token and the models' EOS. With ``tools``, a first system turn lists
them (``Tools: calculator(expression), search(query)``); an assistant's calls render in the
Hermes format (``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``) and tool results
as ``<|tool|>`` turns. Image parts render as the ``<image>``
placeholder followed by a newline, which the LLaVA processor expands to one token per image patch.
"""

from __future__ import annotations

import json
from typing import Any

END = "<|end|>"
PAD = "<|pad|>"
IMAGE = "<image>"
# Hermes tool-call tags: ordinary (not special) tokens of the tool model's tokenizer, so decoding
# keeps them and vLLM's ``hermes`` parser finds them in the vocabulary.
TOOL_CALL_TAGS = ["<tool_call>", "</tool_call>"]
# The vLLM tool parser that reads this format (``--tool-call-parser``).
VLLM_TOOL_PARSER = "hermes"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD, END, *ROLE_TOKENS.values(), IMAGE]

# Kept byte-for-byte equivalent to render(); tests check the two agree.
CHAT_TEMPLATE = (
    "{% if tools %}{{ '<|system|>\nTools: ' }}{% for tool in tools %}"
    "{% set f = tool['function'] if tool['function'] is defined else tool %}"
    "{% if not loop.first %}{{ ', ' }}{% endif %}{{ f['name'] + '(' }}"
    "{% if f['parameters'] is defined and f['parameters']['properties'] is defined %}"
    "{% for p in f['parameters']['properties'] %}"
    "{% if not loop.first %}{{ ', ' }}{% endif %}{{ p }}{% endfor %}{% endif %}"
    "{{ ')' }}{% endfor %}{{ '<|end|>\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] %}{% for part in message['content'] %}"
    "{% if part['type'] in ['image', 'image_url'] %}{{ '<image>\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{% for call in message['tool_calls'] %}"
    "{% set f = call['function'] if call['function'] is defined else call %}"
    "{% if not loop.first or message['content'] %}{{ '\n' }}{% endif %}"
    "{{ '<tool_call>\n{\"name\": ' }}{{ f['name'] | tojson }}{{ ', \"arguments\": ' }}"
    "{% if f['arguments'] is string %}{{ f['arguments'] }}"
    "{% else %}{{ f['arguments'] | tojson }}{% endif %}"
    "{{ '}\n</tool_call>' }}{% endfor %}{% endif %}"
    "{{ '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def tools_line(tools: list[dict[str, Any]]) -> str:
    """The system turn that lists the tools: names and parameter names only, so that a tiny
    model reads the same line whatever descriptions a deployment writes."""
    signatures = []
    for tool in tools:
        fn = tool.get("function", tool)
        params = fn.get("parameters", {}).get("properties", {})
        signatures.append(f"{fn['name']}({', '.join(params)})")
    return f"<|system|>\nTools: {', '.join(signatures)}{END}\n"


def tool_call_text(name: str, arguments: Any) -> str:
    """One call in the Hermes format (what vLLM's ``hermes`` parser and the engine read)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return f'<tool_call>\n{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": {args}}}\n</tool_call>'


def render(
    messages: list[dict[str, Any]],
    add_generation_prompt: bool = False,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """Render messages exactly as CHAT_TEMPLATE does."""
    out: list[str] = [tools_line(tools)] if tools else []
    for message in messages:
        out.append(f"<|{message['role']}|>\n")
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
        elif content:
            for part in content:
                if part["type"] in ("image", "image_url"):
                    out.append(IMAGE + "\n")
                elif part["type"] == "text":
                    out.append(part["text"])
        for i, call in enumerate(message.get("tool_calls") or []):
            fn = call.get("function", call)
            if i or content:
                out.append("\n")
            out.append(tool_call_text(fn["name"], fn["arguments"]))
        out.append(END + "\n")
    if add_generation_prompt:
        out.append("<|assistant|>\n")
    return "".join(out)
