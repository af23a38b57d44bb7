"""User input as a log line or a `bridge/event` quotes it: never more than 120 characters,
so a 64 kB topic, a 4,000-digit payload or a 3,000-character request name cannot make a
line of that size."""

from __future__ import annotations

#: The most characters of one piece of user input that a message quotes.
MAX_SHOWN = 120


def clipped(text: str) -> str:
    """`text` as it is, cut to MAX_SHOWN characters (`...` marks the cut)."""
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}..."


def quoted(text: str) -> str:
    """`text` in quotes (repr), cut to MAX_SHOWN characters (`...` marks the cut)."""
    return repr(text) if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]!r}..."
