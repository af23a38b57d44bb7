"""Pair-setup and pairing-management rules HAP-python 5 lacks (RELIABILITY T19, T20, T25).

- At most 100 wrong setup codes, counted on disk: after that every M1 gets kTLVError_MaxTries
  until a correct code is proven or `reset_pair_setup_attempts` runs (ADK).
- One pair-setup at a time: M1 on another connection gets kTLVError_Busy while a session is
  in progress (at most 30 s, ended early by its connection closing) (ADK). HAP-python keeps
  one SRP verifier per driver, so a second M1 used to replace the first controller's.
- An SRP public key A with A mod N == 0 is refused: it makes the shared secret 0, so HAP-python
  accepted a proof computed without the setup code.
- At most 16 pairings (kTLVError_MaxPeers); an add-pairing for a known controller with another
  key is refused instead of silently replacing the key (HAP spec, Add Pairing).

How it is installed: HAP-python creates its request handler in
`HAPServerProtocol.connection_made` from a module-level class, and that protocol in
`HAPServer.async_start`. Our server starts our protocol, which swaps in our handler right after
HAP-python made its own: no HAP-python module is patched and other drivers are unaffected.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhap import tlv
from pyhap.hap_handler import HAP_TLV_STATES, HAP_TLV_TAGS, HAPServerHandler
from pyhap.hap_protocol import HAPServerProtocol
from pyhap.hap_server import HAPServer

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

# kTLVError_* values (HAP spec table 5-5); HAP-python names only some of them.
_ERROR_UNKNOWN = b"\x01"
_ERROR_AUTHENTICATION = b"\x02"
_ERROR_MAX_PEERS = b"\x04"
_ERROR_MAX_TRIES = b"\x05"
_ERROR_BUSY = b"\x07"


def _validate_attempts(data: Any) -> None:
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
                return _ERROR_MAX_TRIES
        session = self._live()
        if session is not None and session.peer != peer:
            _LOGGER.warning("Pair-setup refused: another controller is pairing")
            return _ERROR_BUSY
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


class GuardedHandler(HAPServerHandler):  # type: ignore[misc]
    """HAP-python's handler with the pair-setup guard and the pairing-management limits."""

    def __init__(self, driver: Any, client_address: Hashable, guard: PairSetupGuard) -> None:
        super().__init__(driver, client_address)
        self._guard = guard

    def _send_pairing_error(self, state: bytes, error: bytes) -> None:
        self._send_tlv_pairing_response(
            tlv.encode(HAP_TLV_TAGS.SEQUENCE_NUM, state, HAP_TLV_TAGS.ERROR_CODE, error)
        )

    def _pairing_one(self) -> None:
        refusal = self._guard.begin(self.client_address)
        if refusal is not None:
            self._send_pairing_error(HAP_TLV_STATES.M2, refusal)
            return
        super()._pairing_one()

    def _pairing_two(self, tlv_objects: dict[bytes, bytes]) -> None:
        """M3 -> M4: check the controller's SRP proof, counting a wrong one."""
        if not self._guard.owns(self.client_address):
            # Not this connection's session (never started, over, or someone else's).
            self._send_pairing_error(HAP_TLV_STATES.M4, _ERROR_UNKNOWN)
            return
        verifier = self.accessory_handler.srp_verifier
        public = bytes(tlv_objects.get(HAP_TLV_TAGS.PUBLIC_KEY, b""))
        proof = bytes(tlv_objects.get(HAP_TLV_TAGS.PASSWORD_PROOF, b""))
        accepted = False
        # SRP-6a: A mod N == 0 makes the shared secret 0, computable without the code.
        if int.from_bytes(public, "big") % verifier.N:
            verifier.set_A(public)
            accepted = hmac.compare_digest(verifier.M, proof)
        if not accepted:
            self._guard.proof_failed(self.client_address)
            self._send_pairing_error(HAP_TLV_STATES.M4, _ERROR_AUTHENTICATION)
            return
        self._guard.proof_accepted(self.client_address)
        self._send_tlv_pairing_response(
            tlv.encode(
                HAP_TLV_TAGS.SEQUENCE_NUM,
                HAP_TLV_STATES.M4,
                HAP_TLV_TAGS.PASSWORD_PROOF,
                verifier.HAMK,
            )
        )

    def _pairing_three(self, tlv_objects: dict[bytes, bytes]) -> None:
        """M5 -> M6, only after this connection proved the code; the session ends here."""
        if not self._guard.owns(self.client_address, proven=True):
            self._send_pairing_error(HAP_TLV_STATES.M6, _ERROR_UNKNOWN)
            return
        try:
            super()._pairing_three(tlv_objects)
        finally:
            self._guard.end(self.client_address)

    def _handle_add_pairing(self, tlv_objects: dict[bytes, bytes]) -> None:
        try:
            client_uuid = uuid.UUID(bytes(tlv_objects[HAP_TLV_TAGS.USERNAME]).decode("utf-8"))
            client_public = bytes(tlv_objects[HAP_TLV_TAGS.PUBLIC_KEY])
        except (KeyError, ValueError):
            self._send_pairing_error(HAP_TLV_STATES.M2, _ERROR_UNKNOWN)
            return
        known = self.state.paired_clients.get(client_uuid)
        if known is None and len(self.state.paired_clients) >= MAX_PAIRINGS:
            _LOGGER.warning("Add pairing refused: already %d pairings", MAX_PAIRINGS)
            self._send_pairing_error(HAP_TLV_STATES.M2, _ERROR_MAX_PEERS)
            return
        if known is not None and bytes(known) != client_public:
            # Only the permissions of a known controller may change, never its key.
            _LOGGER.warning("Add pairing refused: a known controller with another key")
            self._send_pairing_error(HAP_TLV_STATES.M2, _ERROR_UNKNOWN)
            return
        super()._handle_add_pairing(tlv_objects)


class GuardedProtocol(HAPServerProtocol):  # type: ignore[misc]
    """HAPServerProtocol with a GuardedHandler; a closed connection ends its pair-setup."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connections: dict[Any, Any],
        driver: Any,
        guard: PairSetupGuard,
    ) -> None:
        super().__init__(loop, connections, driver)
        self._guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.handler = GuardedHandler(self.accessory_driver, self.peername, self._guard)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.end(self.peername)
        super().connection_lost(exc)


class GuardedServer(HAPServer):  # type: ignore[misc]
    """HAPServer whose connections use GuardedProtocol."""

    def __init__(self, addr_port: tuple[str, int], driver: Any, guard: PairSetupGuard) -> None:
        super().__init__(addr_port, driver)
        self.guard = guard

    async def async_start(self, loop: asyncio.AbstractEventLoop) -> None:
        # HAPServer.async_start, with our protocol in place of HAP-python's.
        self.loop = loop
        self.server = await loop.create_server(
            lambda: GuardedProtocol(loop, self.connections, self.accessory_handler, self.guard),
            self._addr_port[0],
            self._addr_port[1],
        )
        self.async_cleanup_connections()
