"""Guess a model's architecture from its tensor names when the file does not say.

Hugging Face exports keep the module path of every weight in the tensor name, and a few module
paths are distinctive enough to name the family. Only unambiguous layouts are listed: decoder
layouts such as ``layers.N.self_attn.q_proj`` are shared by Llama, Mistral, Qwen, OPT and others,
so they are deliberately left unnamed rather than guessed wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# First match wins, so prefixed variants come before the generic layout they share.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("roberta", re.compile(r"^roberta\.encoder\.layer\.\d+\.")),
    ("distilbert", re.compile(r"(^|\.)transformer\.layer\.\d+\.attention\.q_lin\.")),
    ("bert", re.compile(r"(^|\.)encoder\.layer\.\d+\.attention\.self\.query\.")),
    ("gpt2", re.compile(r"(^|\.)h\.\d+\.attn\.c_attn\.")),
    ("t5", re.compile(r"(^|\.)encoder\.block\.\d+\.layer\.0\.SelfAttention\.q\.")),
)


def infer_architecture(tensor_names: Iterable[str]) -> str | None:
    """Name the architecture family whose characteristic tensor appears, or None."""
    names = tuple(tensor_names)
    for architecture, pattern in _RULES:
        if any(pattern.search(name) for name in names):
            return architecture
    return None
