"""What the bridge uses of HAP-python, aiohomekit and paho beyond their public API, pinned.

exposer/hap_adapter.py, controller/aiohomekit_adapter.py and controller/links/ are the only
modules allowed to reach into HAP-python and aiohomekit, mqtt/link.py into aiomqtt and paho.
Every private method they override or call and every internal attribute they read or write is
listed here with the shape they rely on, so that an upgrade that moves one fails here, by
name, instead of somewhere strange. When a test here fails after an upgrade: read
docs/libraries.md, adapt the adapter, update this file.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from aiohomekit import protocol
from aiohomekit.characteristic_cache import CharacteristicCacheMemory
from aiohomekit.controller import Controller
from aiohomekit.controller.abstract import AbstractController, AbstractPairing, TransportType
from aiohomekit.controller.coap.connection import CoAPHomeKitConnection
from aiohomekit.controller.coap.pairing import CoAPPairing
from aiohomekit.controller.ip.connection import HomeKitConnection
from aiohomekit.controller.ip.pairing import IpPairing
from aiohomekit.crypto.srp import HK_KEY_LENGTH, SrpClient
from aiohomekit.zeroconf import ZeroconfPairing
from paho.mqtt import _packet as paho_packets
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pyhap import tlv, util
from pyhap.accessory_driver import AccessoryDriver, AccessoryMDNSServiceInfo
from pyhap.hap_handler import HAP_TLV_STATES, HAP_TLV_TAGS, HAPServerHandler
from pyhap.hap_protocol import HAPServerProtocol
from pyhap.hap_server import HAPServer
from pyhap.state import State
from zeroconf.asyncio import AsyncZeroconf

from mqtt_hk_bridge.controller import aiohomekit_adapter
from mqtt_hk_bridge.exposer import hap_adapter
from mqtt_hk_bridge.mqtt.link import SharedTableProperties, read_properties_cheaply

PACKAGE = Path(__file__).resolve().parents[2] / "mqtt_hk_bridge"
ADAPTERS = {
    PACKAGE / "exposer" / "hap_adapter.py",
    PACKAGE / "controller" / "aiohomekit_adapter.py",
    *(PACKAGE / "controller" / "links").glob("*.py"),
}
HAP_PYTHON = f"HAP-python {version('HAP-python')}"
AIOHOMEKIT = (
    f"aiohomekit {version('aiohomekit')} "
    f"(adapter written for {aiohomekit_adapter.TARGETED_VERSION})"
)


def params(function: Callable[..., object]) -> list[str]:
    return list(inspect.signature(function).parameters)


def assert_params(function: Callable[..., object], expected: list[str], library: str) -> None:
    found = params(function)
    assert found[: len(expected)] == expected, (
        f"{library}: {function.__qualname__}{inspect.signature(function)} moved; the adapter "
        f"calls or overrides it with ({', '.join(expected)})"
    )


# ---- HAP-python ------------------------------------------------------------------------------

#: Private handler methods the adapter overrides or calls, with their parameters.
HANDLER_PRIVATE = {
    "_pairing_one": ["self"],
    "_pairing_two": ["self", "tlv_objects"],
    "_pairing_three": ["self", "tlv_objects"],
    "_handle_add_pairing": ["self", "tlv_objects"],
    "_send_tlv_pairing_response": ["self", "data"],
}

#: Public driver methods the adapter overrides (a changed shape breaks the override).
DRIVER_OVERRIDES = {
    "add_accessory": ["self", "accessory"],
    "load": ["self"],
    "persist": ["self"],
    "async_persist": ["self"],
    "pair": ["self", "client_username_bytes", "client_public", "client_permissions"],
    "unpair": ["self", "client_uuid"],
    "set_characteristics": ["self", "chars_query", "client_addr"],
    "async_start": ["self"],
    "async_stop": ["self"],
    "async_update_advertisement": ["self"],
}

#: The copy of HAPServer.async_start in GuardedServer, made from this source.
HAP_SERVER_ASYNC_START_SHA256 = "08975a94a2ca3a6ce385199f7a13d3b6dccd0f74149b84f50af1e0a4bbab1d56"


@pytest.mark.parametrize("name", sorted(HANDLER_PRIVATE))
def test_hap_handler_private_methods(name: str) -> None:
    method = getattr(HAPServerHandler, name, None)
    assert callable(method), f"{HAP_PYTHON}: HAPServerHandler.{name} is gone (hap_adapter)"
    assert_params(method, HANDLER_PRIVATE[name], HAP_PYTHON)


@pytest.mark.parametrize("name", sorted(DRIVER_OVERRIDES))
def test_hap_driver_methods_the_adapter_overrides(name: str) -> None:
    method = getattr(AccessoryDriver, name, None)
    assert callable(method), f"{HAP_PYTHON}: AccessoryDriver.{name} is gone (hap_adapter)"
    assert_params(method, DRIVER_OVERRIDES[name], HAP_PYTHON)


def test_hap_driver_constructor_and_hooks() -> None:
    accepted = set(params(AccessoryDriver.__init__))
    passed = {"persist_file", "advertise", "loop", "address", "listen_address",
              "advertised_address", "port", "pincode"}  # fmt: skip
    assert passed <= accepted, f"{HAP_PYTHON}: AccessoryDriver() lost {passed - accepted}"
    assert callable(AccessoryDriver.listen_address)
    # Pair-setup rules the adapter keeps on top of HAP-python's own (docs/libraries.md).
    assert callable(AccessoryDriver.register_failed_pairing_attempt)
    assert isinstance(inspect.getattr_static(AccessoryDriver, "pairing_locked_out"), property)
    assert_params(AccessoryMDNSServiceInfo.__init__, ["self", "accessory", "state"], HAP_PYTHON)
    for name in ("paired_clients", "config_version", "setup_id", "mac", "port"):
        assert name in inspect.getsource(State.__init__), f"{HAP_PYTHON}: State.{name} moved"
    assert callable(State.set_accessories_hash) and callable(State.add_paired_client)
    # announced_address: the driver asks the routing table when given no address.
    assert callable(util.get_local_address)
    assert "util.get_local_address()" in inspect.getsource(AccessoryDriver.__init__)
    # The record quiet_hap_protocol_logging drops (raw permission bytes).
    assert '"Paired with %s with permissions %s."' in inspect.getsource(AccessoryDriver.pair), (
        f"{HAP_PYTHON}: the pairing log record changed; update _QuietPairingRecord"
    )


def test_hap_protocol_and_server_seams() -> None:
    assert_params(
        HAPServerProtocol.__init__, ["self", "loop", "connections", "accessory_driver"], HAP_PYTHON
    )
    assert_params(HAPServer.__init__, ["self", "addr_port", "accessory_handler"], HAP_PYTHON)
    for name in ("handler", "peername", "accessory_driver"):
        assert f"self.{name}" in inspect.getsource(HAPServerProtocol.__init__), name
    assert "self.handler = HAPServerHandler(" in inspect.getsource(
        HAPServerProtocol.connection_made
    ), f"{HAP_PYTHON}: connection_made no longer makes the handler GuardedProtocol replaces"
    source = inspect.getsource(HAPServer.async_start)
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == HAP_SERVER_ASYNC_START_SHA256, (
        f"{HAP_PYTHON}: HAPServer.async_start changed; GuardedServer.async_start repeats its "
        f"steps with our protocol. Compare, adapt, then pin sha256 {digest}:\n{source}"
    )
    assert callable(HAPServer.async_cleanup_connections)


def test_hap_handler_answers_carry_the_tags_the_guard_reads() -> None:
    # GuardedHandler._pairing_two tells an accepted proof from a refused one by these tags.
    answer = tlv.decode(
        tlv.encode(HAP_TLV_TAGS.SEQUENCE_NUM, HAP_TLV_STATES.M4, HAP_TLV_TAGS.PASSWORD_PROOF, b"p")
    )
    assert answer[HAP_TLV_TAGS.PASSWORD_PROOF] == b"p"
    assert HAP_TLV_TAGS.ERROR_CODE not in answer
    assert "self.response" in inspect.getsource(HAPServerHandler.__init__)
    assert callable(util.callback) and callable(util.async_create_background_task)


# ---- aiohomekit ------------------------------------------------------------------------------


async def test_aiohomekit_connection_internals() -> None:
    connection = HomeKitConnection(None, ["127.0.0.1"], 1)  # type: ignore[arg-type]
    for name in ("closing", "closed", "hosts", "port", "connected_host"):
        assert hasattr(connection, name), f"{AIOHOMEKIT}: HomeKitConnection.{name} is gone"
    assert connection.closing is False and connection.closed is False
    assert connection.last_connector_error is None
    assert_params(HomeKitConnection.reconnect_soon, ["self"], AIOHOMEKIT)
    assert_params(HomeKitConnection.close, ["self"], AIOHOMEKIT)
    # IpLink wakes its session when a connection is lost or made.
    assert_params(HomeKitConnection._connection_lost, ["self", "exception"], AIOHOMEKIT)
    assert_params(IpPairing.connection_made, ["self", "secure"], AIOHOMEKIT)
    # The flag IpLink.attempt clears: still set for good on a loss while closing?
    assert "self.closed = True" in inspect.getsource(HomeKitConnection._connection_lost), (
        f"{AIOHOMEKIT}: a lost connection no longer sets `closed`; IpLink.attempt may no "
        "longer need to clear it"
    )


def test_aiohomekit_pairing_internals() -> None:
    assert_params(IpPairing.event_received, ["self", "event"], AIOHOMEKIT)
    # Every link follows the zeroconf record through this handler (the tests also route a
    # pairing's record through a TCP proxy with it).
    assert_params(ZeroconfPairing._async_description_update, ["self", "description"], AIOHOMEKIT)
    for pairing_class in (IpPairing, CoAPPairing):
        assert issubclass(pairing_class, ZeroconfPairing), pairing_class


def test_aiohomekit_ble_internals() -> None:
    from aiohomekit.controller.ble.controller import BleController
    from aiohomekit.controller.ble.pairing import BlePairing

    # bluetooth_available reads whether the Bluetooth transport got a scanner.
    assert "self._scanner" in inspect.getsource(BleController.__init__)
    # BleLink follows advertisements through the zeroconf-style handler, and reads these.
    assert_params(BlePairing._async_description_update, ["self", "description"], AIOHOMEKIT)
    for name in ("is_available", "poll_interval"):
        assert isinstance(inspect.getattr_static(BlePairing, name), property), name


def test_aiohomekit_coap_internals() -> None:
    # CoapLink makes a session with the pair-verify every request starts with, and ends it.
    assert inspect.iscoroutinefunction(CoAPPairing._ensure_connected)
    assert_params(CoAPPairing._ensure_connected, ["self"], AIOHOMEKIT)
    assert inspect.iscoroutinefunction(CoAPHomeKitConnection.reconnect_soon)
    assert "self.address = " in inspect.getsource(CoAPHomeKitConnection.__init__)
    assert "self.enc_ctx = None" in inspect.getsource(CoAPHomeKitConnection.reconnect_soon)
    source = inspect.getsource(AbstractController.__init__)
    for name in ("pairings", "aliases", "discoveries"):
        assert f"self.{name} = " in source, f"{AIOHOMEKIT}: controller.{name} moved"


def test_aiohomekit_pair_setup_srp_seam() -> None:
    # watch_srp_padding points this module-level name at a recording subclass.
    assert protocol.SrpClient is SrpClient  # type: ignore[attr-defined]
    assert "SrpClient(" in inspect.getsource(protocol.perform_pair_setup_part2)
    assert HK_KEY_LENGTH == 384
    for name in ("get_shared_secret", "get_session_key_bytes", "set_server_public_key"):
        assert callable(getattr(SrpClient, name)), f"{AIOHOMEKIT}: SrpClient.{name} is gone"
    assert "self.B_b = B_b" in inspect.getsource(SrpClient.set_server_public_key)


def test_aiohomekit_database_cache_seam() -> None:
    # The CLI tells the cache the advertised c# so no background re-read starts.
    assert "char_cache" in params(Controller.__init__)
    assert_params(
        CharacteristicCacheMemory.async_create_or_update_map,
        ["self", "homekit_id", "config_num", "accessories"],
        AIOHOMEKIT,
    )
    assert "description.config_num > self.config_num" in inspect.getsource(
        AbstractPairing._async_description_update
    ), f"{AIOHOMEKIT}: what starts a background database read changed (commands._load)"


async def test_aiohomekit_controller_on_the_shared_zeroconf() -> None:
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    try:
        controller, browsers = await aiohomekit_adapter.start_controller(zeroconf)
        try:
            assert isinstance(controller.aliases, dict) and isinstance(controller.pairings, dict)
            assert controller.transports, f"{AIOHOMEKIT}: no transport started"
            for transport in controller.transports.values():
                assert isinstance(transport.pairings, dict)
            assert_params(Controller.load_pairing, ["self", "alias", "pairing_data"], AIOHOMEKIT)
        finally:
            await aiohomekit_adapter.stop_controller(controller, browsers)
    finally:
        await zeroconf.async_close()


async def test_aiohomekit_bluetooth_transport_follows_the_setting() -> None:
    # start_controller sets the module name Controller.async_start reads, every start.
    assert "if BLE_TRANSPORT_SUPPORTED:" in inspect.getsource(Controller.async_start), (
        f"{AIOHOMEKIT}: how the controller decides on Bluetooth changed (start_controller)"
    )
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    try:
        for bluetooth in (False, True, False):
            controller, browsers = await aiohomekit_adapter.start_controller(
                zeroconf, bluetooth=bluetooth
            )
            try:
                assert (TransportType.BLE in controller.transports) is bluetooth
            finally:
                await aiohomekit_adapter.stop_controller(controller, browsers)
    finally:
        await zeroconf.async_close()


# ---- paho (mqtt/link.py) ---------------------------------------------------------------------

PAHO = f"paho-mqtt {version('paho-mqtt')}"


def test_paho_makes_received_properties_by_its_packet_modules_name() -> None:
    """read_properties_cheaply swaps the class paho's packet decoders make by that name."""
    assert "Properties(PacketTypes.PUBLISH)" in inspect.getsource(paho_packets.decode_publish), (
        f"{PAHO}: decode_publish no longer makes Properties(PacketTypes.PUBLISH)"
    )
    assert params(Properties.__init__) == ["self", "packetType"], PAHO


def test_paho_properties_keep_nothing_per_object_but_what_the_link_shares() -> None:
    """SharedTableProperties keeps paho's tables on the class and sets only the packet type."""
    assert set(vars(Properties(PacketTypes.PUBLISH))) == {
        "packetType",
        "types",
        "names",
        "properties",
    }, f"{PAHO}: Properties keeps more per object; SharedTableProperties must too"


def _properties(**values: object) -> bytes:
    properties = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(properties, name, value)
    return bytes(properties.pack())


@pytest.mark.parametrize(
    "packed",
    [
        _properties(),
        _properties(
            ResponseTopic="a/b",
            CorrelationData=b"\x01\x02",
            MessageExpiryInterval=30,
            UserProperty=[("k", "v"), ("k", "w")],
            SubscriptionIdentifier=[7],
        ),
    ],
)
def test_shared_table_properties_read_what_paho_reads(packed: bytes) -> None:
    topic = b"HomeKit/esp/TemperatureSensor/CurrentTemperature"
    packet = len(topic).to_bytes(2, "big") + topic + packed + b"21.5"
    theirs = Properties(PacketTypes.PUBLISH)
    ours = SharedTableProperties(PacketTypes.PUBLISH)
    assert ours.unpack(packed) == (ours, len(packed))
    assert theirs.unpack(packed)[1] == len(packed)
    assert ours.json() == theirs.json()
    ours.clear()
    assert ours.isEmpty()
    read_properties_cheaply()
    decoded = paho_packets.decode_publish(0x30, packet, MQTTProtocolVersion.MQTTv5)
    assert isinstance(decoded.properties, SharedTableProperties)
    assert decoded.properties.json() == theirs.json()
    assert (decoded.topic, decoded.payload) == (topic, b"21.5")


# ---- nothing else reaches inside ------------------------------------------------------------


def package_modules() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def private_accesses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """`x._name` where x is not self, cls or super(): another object's internals."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__"):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        is_super = isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super"
        if is_super:
            continue
        yield node.lineno, ast.unparse(node)


def test_no_module_outside_the_adapters_reaches_into_another_object() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text}"
        for path in package_modules()
        if path not in ADAPTERS
        for line, text in private_accesses(ast.parse(path.read_text()))
    ]
    assert found == [], "private attributes used outside the adapters:\n" + "\n".join(found)


LIBRARY_PREFIXES = ("pyhap.", "aiohomekit.")


def library_subclasses() -> Iterator[tuple[str, type, type]]:
    """(module, our class, its library base) for our classes outside the adapters."""
    import importlib

    for path in package_modules():
        if path in ADAPTERS or path.name == "__main__.py":  # importing it runs the CLI
            continue
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            for base in cls.__mro__[1:]:
                if base.__module__.startswith(LIBRARY_PREFIXES):
                    yield name, cls, base


def test_subclasses_outside_the_adapters_do_not_touch_library_privates() -> None:
    """A `self._x` in our subclass of a library class must be ours, not the library's."""
    clashes = []
    for module, cls, base in library_subclasses():
        ours = {
            text.split(".", 1)[1]
            for _, text in private_self_accesses(ast.parse(inspect.getsource(cls)))
        }
        theirs = {name for name in ours if f"self.{name}" in inspect.getsource(base)}
        theirs |= {name for name in ours if hasattr(base, name)}
        clashes += [f"{module}.{cls.__name__}: {name} is {base.__qualname__}'s" for name in theirs]
    assert clashes == []


def private_self_accesses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            yield node.lineno, ast.unparse(node)


def test_the_adapters_are_the_only_subclassers_of_driver_handler_and_server() -> None:
    assert issubclass(hap_adapter.GuardedHandler, HAPServerHandler)
    others = [
        f"{module}.{cls.__name__}"
        for module, cls, base in library_subclasses()
        if base in (AccessoryDriver, HAPServerHandler, HAPServerProtocol, HAPServer)
    ]
    assert others == []
