"""How many HAP connections that have not proven a pairing the bridge keeps, and for how long.

Anyone on the network can open a TCP connection to the HAP port; until pair-verify succeeds
such a connection is a stranger. Strangers are capped (in total and per source address), the
oldest making room for a new one, so a flood of silent connections can neither exhaust the
process's file descriptors nor keep a paired controller from connecting: its connection is
the newest, and is verified within milliseconds. A stranger that has not verified within
30 s is closed (the ADK's limit); one that is pairing keeps its connection while its
pair-setup session lasts (itself at most 30 s).

No I/O: the adapter asks `admit` and `expired` and closes what they name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

#: Unverified connections kept at once; a paired controller's is one of them for a moment.
MAX_UNVERIFIED = 32
#: Unverified connections kept from one source address.
MAX_UNVERIFIED_PER_SOURCE = 8
#: An unverified connection older than this is closed (unless it is pairing).
UNVERIFIED_TIMEOUT = 30.0


@dataclass(frozen=True)
class _Stranger:
    source: str
    since: float


class UnverifiedConnections:
    def __init__(
        self,
        *,
        total: int = MAX_UNVERIFIED,
        per_source: int = MAX_UNVERIFIED_PER_SOURCE,
        timeout: float = UNVERIFIED_TIMEOUT,
    ) -> None:
        self._total = total
        self._per_source = per_source
        self._timeout = timeout
        # In arrival order: the first is the oldest.
        self._strangers: OrderedDict[Hashable, _Stranger] = OrderedDict()

    def __len__(self) -> int:
        return len(self._strangers)

    def admit(
        self,
        key: Hashable,
        source: str,
        now: float,
        verified: Callable[[Hashable], bool],
        pairing: Callable[[Hashable], bool],
    ) -> list[Hashable]:
        """A new connection from `source`: the connections to close to make room for it (never
        the one in the middle of pair-setup: a user may be typing the code)."""
        self._forget_verified(verified)
        evicted: list[Hashable] = []
        same_source = [k for k, s in self._strangers.items() if s.source == source]
        if len(same_source) >= self._per_source:
            evicted = [k for k in same_source if not pairing(k)][:1]
        elif len(self._strangers) >= self._total:
            evicted = [k for k in self._strangers if not pairing(k)][:1]
        for gone in evicted:
            del self._strangers[gone]
        self._strangers[key] = _Stranger(source, now)
        return evicted

    def expired(
        self, now: float, verified: Callable[[Hashable], bool], pairing: Callable[[Hashable], bool]
    ) -> list[Hashable]:
        """Connections unverified for longer than the timeout (and not pairing): to close."""
        self._forget_verified(verified)
        old = [
            key
            for key, stranger in self._strangers.items()
            if now - stranger.since > self._timeout and not pairing(key)
        ]
        for key in old:
            del self._strangers[key]
        return old

    def closed(self, key: Hashable) -> None:
        self._strangers.pop(key, None)

    def _forget_verified(self, verified: Callable[[Hashable], bool]) -> None:
        for key in [key for key in self._strangers if verified(key)]:
            del self._strangers[key]
