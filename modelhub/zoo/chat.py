"""The zoo's chat format, shared by training (Python rendering) and serving (Jinja template).

A conversation renders as::

    <|system|>\\nYou are ...<|end|>\\n<|user|>\\nHi<|end|>\\n<|assistant|>\\nHello!<|end|>\\n

``<|end|>`` is the end-of-turn token and the models' EOS. Image parts render as the ``<image>``
placeholder followed by a newline, which the LLaVA processor expands to one token per image patch.
"""

from __future__ import annotations

from typing import Any

END = "<|end|>"
PAD = "<|pad|>"
IMAGE = "<image>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD, END, *ROLE_TOKENS.values(), IMAGE]

# Kept byte-for-byte equivalent to render(); tests check the two agree.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ['image', 'image_url'] %}{{ '<image>\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def render(messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    """Render messages exactly as CHAT_TEMPLATE does."""
    out: list[str] = []
    for message in messages:
        out.append(f"<|{message['role']}|>\n")
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
        else:
            for part in content:
                if part["type"] in ("image", "image_url"):
                    out.append(IMAGE + "\n")
                elif part["type"] == "text":
                    out.append(part["text"])
        out.append(END + "\n")
    if add_generation_prompt:
        out.append("<|assistant|>\n")
    return "".join(out)
