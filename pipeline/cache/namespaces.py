"""The cache's namespaces: one per kind of value, each with its own TTL (`cache.ttl_s`)."""

from __future__ import annotations

from enum import StrEnum


class Namespace(StrEnum):
    LOADS = "loads"  # load lookups
    INVENTORY = "inventory"  # stock lookups
    EQUIPMENT = "equipment"  # equipment lookups
    SEARCH = "search"  # question -> tool call: the model's routing work
    LLM = "llm"  # model replies to identical prompts
    TTS = "tts"  # audio of repeated sentences


# Bump a namespace's version when the shape of its values changes: old entries are
# then never read (see core.py).
VALUE_VERSIONS: dict[str, int] = {ns.value: 1 for ns in Namespace}
