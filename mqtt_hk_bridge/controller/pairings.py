"""Controller pairings: alias -> aiohomekit pairing data, in one atomic 0600 JSON file.

aiohomekit's own `save_data` writes in place with default permissions and forgets pairings
made with `finish_pairing`; this store is the only place pairings are kept. A corrupt file
stops start-up with its name (StateFileError) and is never reset: losing it would mean
factory-resetting every paired accessory.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohomekit.controller import Controller
from aiohomekit.controller.abstract import AbstractPairing
from aiohomekit.exceptions import (
    AccessoryNotFoundError,
    AuthenticationError,
    BackoffError,
    BusyError,
    HomeKitException,
    MaxPeersError,
    MaxTriesError,
    UnavailableError,
)

from .. import const
from ..errors import BridgeError, StateFileError
from ..store import JsonStore, ensure_private_dir
from .aiohomekit_adapter import (
    drop_unregistered_pairing,
    find_accessory,
    loaded_pairing,
    watch_srp_padding,
)

_LOGGER = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: What every pairing must hold to pair-verify: both ids and both long-term keys.
REQUIRED_KEYS = ("AccessoryPairingID", "AccessoryLTPK", "iOSPairingId", "iOSDeviceLTSK")
#: Room left in a device id for `-<aid>` of a bridged accessory (aids can have 16 digits).
MAX_ALIAS_LENGTH = const.MAX_DEVICE_ID_LENGTH - 20
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]*[A-Za-z_.][A-Za-z0-9_.]*)*$")

PairingData = dict[str, Any]


class PairingError(BridgeError):
    """A pairing request that cannot be done (unknown alias, alias taken, bad alias)."""


class WrongSetupCodeError(PairingError):
    """The accessory refused the setup code's proof (and no encoding quirk explains it)."""


def check_alias(alias: str) -> str:
    """An alias becomes a device id and a topic level: keep it plain and unambiguous.

    No `/ + #`, not `bridge`, and no `-<digits>` part, which would look like `<alias>-<aid>`.
    """
    if not alias or len(alias) > MAX_ALIAS_LENGTH or not _ALIAS_RE.match(alias):
        raise PairingError(
            f"alias {alias!r} must be 1-{MAX_ALIAS_LENGTH} letters, digits, '_' or '.', "
            "optionally joined by '-' (a part after '-' may not be only digits)"
        )
    if alias == const.BRIDGE_DEVICE_ID:
        raise PairingError(f"alias {alias!r} is reserved for the bridge's own topics")
    return alias


def _validate(data: Any) -> None:
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ValueError(f"expected an object with version {FORMAT_VERSION}")
    pairings = data.get("pairings")
    if not isinstance(pairings, dict):
        raise ValueError("'pairings' must be an object of alias -> pairing data")
    for alias, pairing in pairings.items():
        if not isinstance(pairing, dict):
            raise ValueError(f"pairing {alias!r} is not an object")
        missing = [key for key in REQUIRED_KEYS if not isinstance(pairing.get(key), str)]
        if missing:
            raise ValueError(f"pairing {alias!r} lacks {', '.join(missing)}")


class PairingStore:
    """The pairings file; every change is written at once (pairings change rarely)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store = JsonStore(path, _validate)
        self._pairings: dict[str, PairingData] = {}
        self._loaded = False

    def load(self) -> dict[str, PairingData]:
        """Read the file (StateFileError naming it when corrupt); a missing file is empty."""
        data = self._store.load()
        self._pairings = dict(data["pairings"]) if data is not None else {}
        self._loaded = True
        return self.all()

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    def all(self) -> dict[str, PairingData]:
        self._ensure_loaded()
        return copy.deepcopy(self._pairings)

    def aliases(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._pairings)

    def get(self, alias: str) -> PairingData:
        self._ensure_loaded()
        try:
            return copy.deepcopy(self._pairings[alias])
        except KeyError:
            raise PairingError(f"no pairing called {alias!r}") from None

    def __contains__(self, alias: object) -> bool:
        self._ensure_loaded()
        return alias in self._pairings

    def alias_of(self, accessory_pairing_id: str) -> str | None:
        """The alias already paired with this accessory (device id), if any."""
        self._ensure_loaded()
        wanted = accessory_pairing_id.lower()
        for alias, data in self._pairings.items():
            if str(data.get("AccessoryPairingID", "")).lower() == wanted:
                return alias
        return None

    def put(self, alias: str, data: PairingData) -> None:
        self.load()  # changes start from the file: a CLI `pair` next to the daemon is kept
        _validate({"version": FORMAT_VERSION, "pairings": {alias: data}})
        self._pairings[alias] = copy.deepcopy(dict(data))
        self._save()

    def remove(self, alias: str) -> None:
        self.load()
        if self._pairings.pop(alias, None) is not None:
            self._save()

    def update_endpoint(self, alias: str, hosts: list[str], port: int) -> bool:
        """Remember where the accessory was last reached, so a restart without a zeroconf
        record still finds it. True when something changed (and was saved)."""
        self.load()
        data = self._pairings.get(alias)
        if data is None or not hosts:
            return False
        if data.get("AccessoryIPs") == hosts and data.get("AccessoryPort") == port:
            return False
        data["AccessoryIP"] = hosts[0]
        data["AccessoryIPs"] = list(hosts)
        data["AccessoryPort"] = port
        self._save()
        return True

    def _save(self) -> None:
        ensure_private_dir(self.path.parent)
        self._store.save({"version": FORMAT_VERSION, "pairings": self._pairings})


def register_new_pairing(
    controller: Controller, store: PairingStore, alias: str, pairing_data: PairingData
) -> AbstractPairing:
    """Persist a fresh pairing and register it with the Controller (aiohomekit 4.0.1's
    `finish_pairing` leaves it unregistered: no save_data, no zeroconf address updates).

    The caller closes the pairing object `finish_pairing` returned before calling this.
    """
    data = copy.deepcopy(dict(pairing_data))
    data.setdefault("Connection", "IP")
    store.put(alias, data)
    drop_unregistered_pairing(controller, alias)
    _LOGGER.info("Paired with %s as %r", data["AccessoryPairingID"], alias)
    return controller.load_pairing(alias, data)


_PIN_RE = re.compile(r"^(\d{3})-?(\d{2})-?(\d{3})$")


def normalize_setup_code(code: str) -> str:
    """`48291735` or `482-91-735` -> `482-91-735` (what pair-setup wants)."""
    match = _PIN_RE.match(code.strip())
    if not match:
        raise PairingError("setup code must look like 482-91-735 (eight digits)")
    return "-".join(match.groups())


def own_hap_device_id(data_dir: Path) -> str | None:
    """The device id this bridge's own HAP side announces (lower case), once it has one."""
    try:
        state = JsonStore(data_dir / const.HAP_STATE_FILE).load()
    except StateFileError:
        return None  # the daemon stops on that itself; here it only marks a listing
    mac = state.get("mac") if isinstance(state, dict) else None
    return str(mac).lower() if mac else None


def stored_mqtt_devices(data_dir: Path) -> list[str]:
    """The ids of the devices the accessory side last saved (for a pairing made while the
    bridge may not run); none when it saved none or the file is unreadable."""
    try:
        devices = JsonStore(data_dir / const.ACCESSORY_DEVICES_FILE).load()
    except StateFileError:
        return []  # the daemon stops on that itself
    return [str(device_id) for device_id in devices] if isinstance(devices, dict) else []


def alias_clash(alias: str, device_ids: Iterable[str]) -> str | None:
    """The MQTT device whose topics a pairing called `alias` would take over: `<alias>`
    itself, or `<alias>-<n>` (the ids of a paired bridge's accessories)."""
    for device_id in device_ids:
        rest = device_id[len(alias) + 1 :]
        if device_id == alias or (device_id.startswith(f"{alias}-") and rest.isdigit()):
            return device_id
    return None


def describe_discovery(
    discovery: Any, transport: str, store: PairingStore, own_device_id: str | None = None
) -> dict[str, Any]:
    """One discovered accessory as `discover` reports it; `this_bridge` marks the bridge's
    own HAP side, which every controller on the network sees too."""
    description = discovery.description
    return {
        "device_id": description.id,
        "name": description.name,
        "model": getattr(description, "model", ""),
        "category": description.category.name.lower(),
        "transport": transport,
        "address": description.address,
        "port": getattr(description, "port", None),  # none over Bluetooth
        "config_num": description.config_num,
        "paired": bool(discovery.paired),
        "alias": store.alias_of(description.id),
        "this_bridge": own_device_id is not None and description.id.lower() == own_device_id,
    }


def discoveries(
    controller: Controller, store: PairingStore, own_device_id: str | None = None
) -> list[dict[str, Any]]:
    found = [
        describe_discovery(discovery, str(kind.value), store, own_device_id)
        for kind, transport in controller.transports.items()
        for discovery in list(transport.discoveries.values())
    ]
    return sorted(found, key=lambda item: (str(item["name"]), str(item["device_id"])))


#: aiohomekit 4.0.1 and HAP-python 5.0-5.2 encode SRP values with a leading zero byte
#: differently, so about 1 pair-setup in 85 fails at M4 with the right code; a second
#: attempt with fresh SRP values succeeds. Only such a failure is retried (the values show
#: it: `srp_padding_differs`); any other refused proof is a wrong code, and costs the
#: accessory one of its allowed attempts, not two.
PAIR_SETUP_ATTEMPTS = 2


def _pair_setup_refusal(device_id: str, err: HomeKitException) -> PairingError | None:
    """What an accessory's pair-setup error means for the person pairing, if we know."""
    if isinstance(err, MaxTriesError):
        return PairingError(
            f"{device_id} refuses pair-setup after too many wrong setup codes; reset the "
            "accessory (see its manual) to pair again"
        )
    if isinstance(err, BackoffError):
        return PairingError(
            f"{device_id} refuses pair-setup for a while after wrong setup codes; try again "
            "in a minute"
        )
    if isinstance(err, BusyError):
        return PairingError(f"{device_id} is busy pairing with another controller; try again")
    if isinstance(err, UnavailableError):
        return PairingError(
            f"{device_id} is already paired with another controller; remove it there (or "
            "reset the accessory) first"
        )
    if isinstance(err, MaxPeersError):
        return PairingError(
            f"{device_id} has no room for another pairing; remove one of its controllers first"
        )
    return None


async def pair_accessory(
    controller: Controller,
    store: PairingStore,
    *,
    device_id: str,
    setup_code: str,
    alias: str,
    find_timeout: float,
    own_device_id: str | None = None,
    mqtt_devices: Iterable[str] = (),
) -> AbstractPairing:
    """Pair-setup with an accessory found on the network; persisted before it is returned.

    Raises PairingError (alias taken, device already ours or paired elsewhere, not found,
    wrong setup code, refused by the accessory) or aiohomekit's other errors.
    """
    check_alias(alias)
    code = normalize_setup_code(setup_code)
    if alias in store:
        raise PairingError(f"alias {alias!r} is already used by a pairing")
    taken = alias_clash(alias, mqtt_devices)
    if taken is not None:
        raise PairingError(
            f"alias {alias!r} would take over the topics of the MQTT device {taken!r} the "
            "bridge shows in the Home app; choose another alias, or remove that device first"
        )
    existing = store.alias_of(device_id)
    if existing is not None:
        raise PairingError(f"{device_id} is already paired as {existing!r}")
    if own_device_id is not None and device_id.lower() == own_device_id:
        raise PairingError(
            f"{device_id} is this bridge's own HomeKit side; pair it from the Home app"
        )
    try:
        discovery = await find_accessory(controller, device_id, find_timeout)
    except AccessoryNotFoundError:
        raise PairingError(
            f"no HomeKit accessory with device id {device_id} found within {find_timeout:g} s"
        ) from None
    if discovery.paired:
        raise PairingError(
            f"{device_id} is already paired with another controller; remove it there "
            "(or reset the accessory) first"
        )
    fresh: Any = None
    try:
        for attempt in range(1, PAIR_SETUP_ATTEMPTS + 1):
            finish = await discovery.async_start_pairing(alias)
            with watch_srp_padding() as padding_differed:
                try:
                    fresh = await finish(code)
                    break
                except AuthenticationError:
                    # Refused twice on such values: a right code does that about once in
                    # 7,000 pair-setups, a wrong one every time.
                    if not padding_differed() or attempt == PAIR_SETUP_ATTEMPTS:
                        raise WrongSetupCodeError(f"wrong setup code for {device_id}") from None
            _LOGGER.info(
                "Pair-setup with %s refused on SRP values HAP-python encodes differently "
                "(a leading zero byte); trying once more with fresh ones",
                device_id,
            )
    except HomeKitException as err:
        refusal = _pair_setup_refusal(device_id, err)
        if refusal is None:
            raise
        raise refusal from err
    # Read the database once on this session: it fills aiohomekit's characteristic cache, which
    # a Bluetooth pairing loaded without one trips over at every advertisement (4.0.1).
    await fresh.list_accessories_and_characteristics()
    data = dict(fresh.pairing_data)
    await fresh.close()
    return register_new_pairing(controller, store, alias, data)


async def unpair_accessory(
    controller: Controller, store: PairingStore, alias: str, *, force: bool = False
) -> bool:
    """Remove the pairing on the accessory, then here. True when the accessory confirmed.

    If the accessory cannot be told (unreachable), the pairing is kept unless `force`:
    forgetting it here alone leaves the accessory paired to keys nobody has.
    """
    data = store.get(alias)
    if loaded_pairing(controller, alias) is None:
        controller.load_pairing(alias, copy.deepcopy(data))
    try:
        await controller.remove_pairing(alias)
    except (HomeKitException, OSError, TimeoutError) as err:
        if not force:
            # aiohomekit dropped it already; load it again so it stays usable.
            controller.load_pairing(alias, copy.deepcopy(data))
            raise PairingError(
                f"the accessory of {alias!r} did not confirm the removal "
                f"({err or type(err).__name__}); the pairing is kept (use force to forget it)"
            ) from err
        _LOGGER.warning("Forgetting %r although the accessory did not confirm: %s", alias, err)
        store.remove(alias)
        return False
    store.remove(alias)
    _LOGGER.info("Unpaired %r", alias)
    return True
