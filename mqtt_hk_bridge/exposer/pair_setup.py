"""Pair-setup rules stricter than HAP-python's, as policy without HAP-python: the adapter
(`hap_adapter`) asks this module at each pair-setup step.

- At most 100 wrong setup codes, counted on disk: after that every M1 gets kTLVError_MaxTries
  until a correct code is proven or `reset_pair_setup_attempts` runs (the ADK's rule).
  HAP-python 5.2's own lock-out (5 wrong proofs, then Busy for 60 s, in memory) slows a
  guesser in between; ours survives restarts and does not unlock by itself.
- One pair-setup at a time: M1 on another connection gets kTLVError_Busy while a session is
  in progress (at most 30 s, ended early by its connection closing). HAP-python keeps one SRP
  verifier per driver, so a second M1 would replace the first controller's.
- At most 16 pairings (kTLVError_MaxPeers); an add-pairing for a known controller with another
  key is refused instead of silently replacing the key (HAP spec, Add Pairing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from ..errors import StateFileError
from ..store import JsonStore

_LOGGER = logging.getLogger(__name__)

#: Wrong setup codes allowed before pair-setup is locked (ADK: kTLVError_MaxTries after 100).
MAX_FAILED_ATTEMPTS = 100
#: A pair-setup session that makes no progress frees the accessory after this (ADK: 30 s).
PAIR_SETUP_TIMEOUT = 30.0
#: Pairings the bridge keeps; the 17th add gets kTLVError_MaxPeers (ADK minimum: 16).
MAX_PAIRINGS = 16
#: The failed-attempts counter, next to the HAP state file in the data dir.
ATTEMPTS_FILE = "pair-setup-attempts.json"
_ATTEMPTS_KEY = "failed_attempts"

# kTLVError_* values (HAP spec, TLV error codes); HAP-python names only some of them.
ERROR_UNKNOWN = b"\x01"
ERROR_AUTHENTICATION = b"\x02"
ERROR_MAX_PEERS = b"\x04"
ERROR_MAX_TRIES = b"\x05"
ERROR_BUSY = b"\x07"


def _validate_attempts(data: object) -> None:
    count = data[_ATTEMPTS_KEY] if isinstance(data, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"{_ATTEMPTS_KEY} must be a whole number >= 0")


def reset_pair_setup_attempts(data_dir: Path) -> int | None:
    """Set the failed pair-setup attempts to 0: the local unlock after a lock-out.

    A running bridge takes the reset in at its next pair-setup request. Returns the count
    before the reset (0 when there was no counter file: nothing is written then), or None
    when the old file was unreadable (it is replaced).
    """
    store = JsonStore(data_dir / ATTEMPTS_FILE, validate=_validate_attempts)
    try:
        data = store.load()
    except StateFileError:
        previous = None
    else:
        if data is None:
            return 0
        previous = int(data[_ATTEMPTS_KEY])
    store.save({_ATTEMPTS_KEY: 0})
    return previous


class FailedAttempts:
    """The persisted count of wrong setup codes (ADK: NumUnsuccessfulAuthAttempts).

    Loaded at start-up (a corrupt file with no usable .bak stops start-up, like every state
    file); written atomically, 0600, on every change.
    """

    def __init__(self, path: Path) -> None:
        self._store = JsonStore(path, validate=_validate_attempts)
        self.count = self._read()
        #: The last save failed: the file may hold fewer failures than there were.
        self._unsaved = False

    @property
    def exhausted(self) -> bool:
        return self.count >= MAX_FAILED_ATTEMPTS

    def _read(self) -> int:
        data = self._store.load()
        return 0 if data is None else int(data[_ATTEMPTS_KEY])

    def reload(self) -> None:
        """Take in a reset made by `reset_pair_setup_attempts` while we run."""
        if self._unsaved:
            # Never let an unwritable disk undo failures: write them first, or keep them.
            self._save()
            if self._unsaved:
                return
        try:
            self.count = self._read()
        except StateFileError as err:
            _LOGGER.error("Cannot re-read the pair-setup attempt counter: %s", err)

    def add_failure(self) -> None:
        self.count += 1
        self._save()

    def reset(self) -> None:
        if self.count:
            self.count = 0
            self._save()

    def _save(self) -> None:
        try:
            self._store.save({_ATTEMPTS_KEY: self.count})
        except OSError as err:
            # The count still holds in memory; only a restart could lose it.
            self._unsaved = True
            _LOGGER.error("Cannot save the pair-setup attempt counter: %s", err)
        else:
            self._unsaved = False


@dataclass
class _Session:
    peer: Hashable
    deadline: float
    proven: bool = False


class PairSetupGuard:
    """Who may run pair-setup now, and how many wrong codes there have been."""

    def __init__(
        self, attempts: FailedAttempts, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self._clock = clock
        self._session: _Session | None = None

    def _live(self) -> _Session | None:
        session = self._session
        if session is not None and self._clock() >= session.deadline:
            _LOGGER.info("Pair-setup session timed out after %.0f s", PAIR_SETUP_TIMEOUT)
            self._session = session = None
        return session

    def begin(self, peer: Hashable) -> bytes | None:
        """M1 from `peer`: None to go ahead, or the kTLVError code refusing it."""
        if self.attempts.exhausted:
            self.attempts.reload()
            if self.attempts.exhausted:
                _LOGGER.warning(
                    "Pair-setup refused: %d wrong setup codes (reset-pair-setup unlocks)",
                    self.attempts.count,
                )
                return ERROR_MAX_TRIES
        session = self._live()
        if session is not None and session.peer != peer:
            _LOGGER.warning("Pair-setup refused: another controller is pairing")
            return ERROR_BUSY
        # A restart on the same connection keeps its deadline: one connection cannot hold
        # the accessory for longer than one session.
        deadline = session.deadline if session else self._clock() + PAIR_SETUP_TIMEOUT
        self._session = _Session(peer, deadline)
        return None

    def owns(self, peer: Hashable, *, proven: bool = False) -> bool:
        """`peer` has the live session (and proved the setup code, if `proven`)."""
        session = self._live()
        return session is not None and session.peer == peer and (session.proven or not proven)

    def proof_failed(self, peer: Hashable) -> None:
        self.attempts.add_failure()
        _LOGGER.warning(
            "Pair-setup: wrong setup code (%d of %d attempts used)",
            self.attempts.count,
            MAX_FAILED_ATTEMPTS,
        )
        self.end(peer)

    def proof_accepted(self, peer: Hashable) -> None:
        # ADK: the counter is reset as soon as a controller proves the code (M4).
        self.attempts.reset()
        if self._session is not None and self._session.peer == peer:
            self._session.proven = True

    def end(self, peer: Hashable) -> None:
        if self._session is not None and self._session.peer == peer:
            self._session = None
