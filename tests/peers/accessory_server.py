"""A real HomeKit IP accessory (HAP-python) in its own process, for the bridge's controller side.

    python -m tests.peers.accessory_server --port 51900 --state-file /tmp/peer.state \
        [--demo | --database recorded.json] [--control-port 0] [--pin 482-91-735] \
        [--name NAME] [--mac AA:BB:CC:DD:EE:FF] [--exit-with-stdin]

HAP and mDNS stay on 127.0.0.1. stdout carries JSON lines only: one `{"ready": {"port",
"device_id", "control_port"}}` once the HAP server listens and the mDNS record is registered,
then one `{"write": {"aid", "iid", "value"}}` per characteristic write a controller made.
SIGTERM/SIGINT stop cleanly (mDNS goodbye); the state file keeps device id and pairings.

`--demo` (default): bridge aid 1, a Lightbulb with On and Brightness on aid 2, a
TemperatureSensor on aid 3. `--database`: replays a recorded `GET /accessories` body with the
same aids, iids, types, perms, formats, metadata and values, built from HAP-python's own
Accessory/Service/Characteristic.

Control channel, TCP on 127.0.0.1:--control-port, one JSON object per line in, one out; every
reply has "ok" (and "error" when false):
    {"cmd": "set", "aid": A, "iid": I, "value": V}  -> {"ok", "value"}  server-side change;
        validated by HAP-python; an event goes out at once if the characteristic has "ev"
    {"cmd": "get", "aid": A, "iid": I}              -> {"ok", "value", "format", "perms"}
    {"cmd": "writes"}                               -> {"ok", "writes": [{"aid","iid","value"}]}
    {"cmd": "info"}        -> {"ok", "device_id", "port", "paired", "config_number", "name"}
    {"cmd": "bump_config"} -> {"ok", "config_number"}  c# + 1, persisted and re-announced
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from pyhap import const
from pyhap.accessory import Accessory, Bridge
from pyhap.accessory_driver import AccessoryDriver
from pyhap.characteristic import Characteristic
from pyhap.const import HAP_SERVER_STATUS
from pyhap.iid_manager import IIDManager
from pyhap.loader import get_loader
from pyhap.service import Service
from pyhap.util import hap_type_to_uuid
from zeroconf.asyncio import AsyncZeroconf

_LOGGER = logging.getLogger(__name__)

Record = dict[str, Any]

# Services whose presence decides the advertised category (mDNS "ci"), first match wins.
_CATEGORY_BY_SERVICE = {
    hap_type_to_uuid(short): category
    for short, category in (
        ("43", const.CATEGORY_LIGHTBULB),
        ("47", const.CATEGORY_OUTLET),
        ("49", const.CATEGORY_SWITCH),
        ("4A", const.CATEGORY_THERMOSTAT),
        ("45", const.CATEGORY_DOOR_LOCK),
        ("7E", const.CATEGORY_ALARM_SYSTEM),
        ("110", const.CATEGORY_CAMERA),
        ("BD", const.CATEGORY_HUMIDIFIER),
        ("B7", const.CATEGORY_FAN),
        ("8A", const.CATEGORY_SENSOR),
        ("82", const.CATEGORY_SENSOR),
        ("85", const.CATEGORY_SENSOR),
    )
}
_NUMERIC_KEYS = ("minValue", "maxValue", "minStep", "unit")
_DEMO_MAKER = "mqtt-hk-bridge tests"


def _emit(kind: str, payload: dict[str, Any]) -> None:
    """One JSON line on stdout; the parent process parses these."""
    print(json.dumps({kind: payload}), flush=True)


def _type_uuid(hap_type: str) -> UUID:
    """A recorded type as UUID: short Apple form ("4A", "701") or full, any case, dashes or not."""
    return hap_type_to_uuid(hap_type.upper()) if len(hap_type) <= 8 else UUID(hap_type)


def _loader_formats() -> dict[UUID, str]:
    loader = get_loader()
    return {hap_type_to_uuid(d["UUID"]): d["Format"] for d in loader.char_types.values()}


_FORMAT_BY_TYPE = _loader_formats()


def _guess_format(record: Record) -> str:
    """Some recordings omit "format"; HAP-python needs one to validate writes."""
    known = _FORMAT_BY_TYPE.get(_type_uuid(record["type"]))
    if known:
        return known
    value = record.get("value")
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "string"


# --- HAP-python objects that serve a recorded database faithfully -----------------------------


class RecordedIIDManager(IIDManager):
    """Hands out the recorded iid of each object instead of counting."""

    def __init__(self) -> None:
        super().__init__()
        self.planned: dict[Service | Characteristic, int] = {}

    def get_iid_for_obj(self, obj: Service | Characteristic) -> int:
        if obj in self.planned:
            return self.planned[obj]
        return max([0, *self.objs]) + 1

    def assign(self, obj: Service | Characteristic) -> None:
        iid = self.get_iid_for_obj(obj)
        previous = self.objs.get(iid)
        super().assign(obj)
        # BLE-era recordings (eve_energy) give a service the iid of one of its characteristics.
        # Lookups by iid (reads, writes, events) want the characteristic, whichever came first.
        if isinstance(previous, Characteristic) and isinstance(obj, Service):
            self.objs[iid] = previous


class RecordedCharacteristic(Characteristic):
    """HAP-python's Characteristic, reporting the recorded keys it would otherwise rewrite.

    HAP-python always sends "format" and "description", drops maxLen 64 and maxLen on
    non-strings, and always sends a value for readable characteristics; recordings differ.
    """

    __slots__ = ("record",)

    def __init__(self, record: Record) -> None:
        fmt = record.get("format") or _guess_format(record)
        properties: dict[str, Any] = {"Format": fmt, "Permissions": list(record["perms"])}
        properties.update({key: record[key] for key in _NUMERIC_KEYS if key in record})
        if "valid-values" in record:
            properties["ValidValues"] = {str(v): v for v in record["valid-values"]}
        # maxLen bounds (truncates) written strings; HAP-python refuses maxLen > 256.
        if fmt == "string" and 0 < record.get("maxLen", 0) <= 256:
            properties["maxLen"] = record["maxLen"]
        name = record["description"] if "description" in record else record["type"]
        super().__init__(name, _type_uuid(record["type"]), properties)
        self.record = record
        if "value" in record:
            self.value = record["value"]  # verbatim: no clamping, rounding or truncation

    def to_HAP(self, include_value: bool = True) -> dict[str, Any]:
        rep = dict(super().to_HAP(include_value))
        for key in ("format", "description", "value"):
            if key not in self.record:
                rep.pop(key, None)
        if "maxLen" in self.record:
            rep["maxLen"] = self.record["maxLen"]
        return rep


class RecordedService(Service):
    """HAP-python's Service plus the "hidden" flag some recordings carry."""

    __slots__ = ("hidden",)

    def __init__(self, record: Record) -> None:
        super().__init__(_type_uuid(record["type"]), record.get("stype") or record["type"])
        self.hidden: bool | None = record.get("hidden")
        self.is_primary_service = record.get("primary")

    def to_HAP(self, include_value: bool = True) -> dict[str, Any]:
        rep = super().to_HAP(include_value)
        if self.hidden is not None:
            rep["hidden"] = self.hidden
        return rep


class _Quiet:
    """No QR code on stdout: stdout is the parent's JSON channel."""

    def setup_message(self) -> None:
        _LOGGER.info("not paired yet")


class _RecordedServicesOnly(_Quiet):
    """Every service comes from the recording, none from HAP-python's defaults."""

    def add_info_service(self) -> None:
        pass

    def add_protocol_version_service(self) -> None:
        pass


class QuietAccessory(_Quiet, Accessory):
    pass


class QuietBridge(_Quiet, Bridge):
    pass


class RecordedAccessory(_RecordedServicesOnly, Accessory):
    pass


class RecordedBridge(_RecordedServicesOnly, Bridge):
    pass


def _fill(accessory: Accessory, record: Record) -> None:
    """Add the recorded services of one accessory, keeping their iids, order and links."""
    iids = accessory.iid_manager
    assert isinstance(iids, RecordedIIDManager)
    services: list[tuple[RecordedService, Record]] = []
    for service_record in record["services"]:
        service = RecordedService(service_record)
        iids.planned[service] = service_record["iid"]
        for char_record in service_record["characteristics"]:
            char = RecordedCharacteristic(char_record)
            iids.planned[char] = char_record["iid"]
            service.add_characteristic(char)
        if len(service.characteristics) != len(service_record["characteristics"]):
            raise ValueError(f"aid {accessory.aid}: service {service_record['iid']} repeats a type")
        services.append((service, service_record))
    accessory.add_service(*(service for service, _ in services))
    by_iid = {service_record["iid"]: service for service, service_record in services}
    for service, service_record in services:
        for linked_iid in service_record.get("linked", []):
            service.add_linked_service(by_iid[linked_iid])
    accessory.category = next(
        (_CATEGORY_BY_SERVICE[s.type_id] for s, _ in services if s.type_id in _CATEGORY_BY_SERVICE),
        accessory.category,
    )


def _recorded_name(record: Record) -> str | None:
    name_type = hap_type_to_uuid("23")
    for service in record["services"]:
        if _type_uuid(service["type"]) == hap_type_to_uuid("3E"):
            for char in service["characteristics"]:
                if _type_uuid(char["type"]) == name_type and char.get("value"):
                    return str(char["value"])
    return None


def build_recorded(driver: AccessoryDriver, records: list[Record], name: str | None) -> Accessory:
    """aid 1 is the top accessory; with more than one accessory it is a Bridge."""
    by_aid = {record["aid"]: record for record in records}
    if const.STANDALONE_AID not in by_aid or len(by_aid) != len(records):
        raise ValueError("the database needs exactly one accessory with aid 1 and unique aids")
    top = by_aid[const.STANDALONE_AID]
    display_name = name or _recorded_name(top) or "Recorded Accessory"
    root: Accessory
    if len(records) == 1:
        root = RecordedAccessory(driver, display_name, aid=1, iid_manager=RecordedIIDManager())
    else:
        root = RecordedBridge(driver, display_name, iid_manager=RecordedIIDManager())
    _fill(root, top)
    for record in records:
        if record is top:
            continue
        assert isinstance(root, Bridge)
        acc = RecordedAccessory(
            driver, _recorded_name(record), aid=record["aid"], iid_manager=RecordedIIDManager()
        )
        _fill(acc, record)
        root.add_accessory(acc)
    return root


def build_demo(driver: AccessoryDriver, name: str | None) -> Accessory:
    """A Bridge with a dimmable light (aid 2) and a temperature sensor (aid 3)."""
    bridge = QuietBridge(driver, name or "Demo Bridge")
    light = QuietAccessory(driver, "Demo Light")
    light.add_preload_service("Lightbulb", chars=["Brightness"])
    light.set_info_service(manufacturer=_DEMO_MAKER, model="Light", serial_number="L-1")
    light.category = const.CATEGORY_LIGHTBULB
    sensor = QuietAccessory(driver, "Demo Sensor")
    sensor.add_preload_service("TemperatureSensor").configure_char("CurrentTemperature", value=21.5)
    sensor.set_info_service(manufacturer=_DEMO_MAKER, model="Sensor", serial_number="T-1")
    sensor.category = const.CATEGORY_SENSOR
    bridge.add_accessory(light)
    bridge.add_accessory(sensor)
    return bridge


# --- the driver: HAP permission checks HAP-python leaves out, and a write log ----------------


class PeerDriver(AccessoryDriver):
    """AccessoryDriver that answers like a real accessory for perms and logs every write.

    HAP-python itself accepts writes to read-only characteristics, reads of write-only ones,
    event subscriptions to anything, and fails with a 500 on an unknown aid.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writes: list[dict[str, Any]] = []

    def find_characteristic(self, aid: int, iid: int) -> Characteristic | None:
        root = self.accessory
        acc = root if aid == root.aid else getattr(root, "accessories", {}).get(aid)
        obj = acc.iid_manager.get_obj(iid) if acc is not None else None
        return obj if isinstance(obj, Characteristic) else None

    def _refusal(self, aid: int, iid: int, query: dict[str, Any] | None) -> int:
        """The HAP status a real accessory answers for this read (query None) or write."""
        char = self.find_characteristic(aid, iid)
        if char is None:
            return HAP_SERVER_STATUS.RESOURCE_DOES_NOT_EXIST
        perms = char.properties["Permissions"]
        if query is None:
            return 0 if "pr" in perms else HAP_SERVER_STATUS.WRITE_ONLY_CHARACTERISTIC
        if "value" in query and "pw" not in perms:
            return HAP_SERVER_STATUS.READ_ONLY_CHARACTERISTIC
        if query.get("ev") and "ev" not in perms:
            return HAP_SERVER_STATUS.NOTIFICATION_NOT_SUPPORTED
        return 0

    def get_characteristics(self, char_ids: list[str]) -> dict[str, Any]:
        wanted = [tuple(int(part) for part in char_id.split(".")) for char_id in char_ids]
        results: dict[tuple[int, ...], dict[str, Any]] = {}
        allowed = []
        for aid, iid in wanted:
            status = self._refusal(aid, iid, None)
            if status:
                results[(aid, iid)] = {"aid": aid, "iid": iid, "status": status}
            else:
                allowed.append(f"{aid}.{iid}")
        if allowed:
            for rep in super().get_characteristics(allowed)["characteristics"]:
                results[(rep["aid"], rep["iid"])] = rep
        return {"characteristics": [results[key] for key in wanted if key in results]}

    def set_characteristics(self, chars_query: dict[str, Any], client_addr: Any) -> Any:
        queries: list[dict[str, Any]] = chars_query["characteristics"]
        refused = {}
        for query in queries:
            status = self._refusal(query["aid"], query["iid"], query)
            if status:
                refused[(query["aid"], query["iid"])] = status
        allowed = [q for q in queries if (q["aid"], q["iid"]) not in refused]
        response = None
        if allowed:
            response = super().set_characteristics(
                {**chars_query, "characteristics": allowed}, client_addr
            )
        results = {(r["aid"], r["iid"]): r for r in (response or {}).get("characteristics", [])}
        for query in allowed:
            key = (query["aid"], query["iid"])
            if "value" in query and results.get(key, {}).get("status", 0) == 0:
                self._log_write(query["aid"], query["iid"], query["value"])
        if not refused:
            return response
        return {
            "characteristics": [
                results.get(key) or {"aid": key[0], "iid": key[1], "status": refused.get(key, 0)}
                for key in ((q["aid"], q["iid"]) for q in queries)
            ]
        }

    def _log_write(self, aid: int, iid: int, value: Any) -> None:
        write = {"aid": aid, "iid": iid, "value": value}
        self.writes.append(write)
        _emit("write", write)


# --- control channel ---------------------------------------------------------------------------


def _run_command(driver: PeerDriver, cmd: dict[str, Any]) -> dict[str, Any]:
    """One control command -> its reply; errors raise and become {"ok": false}."""
    name = cmd["cmd"]
    if name in ("set", "get"):
        char = driver.find_characteristic(int(cmd["aid"]), int(cmd["iid"]))
        if char is None:
            raise KeyError(f"no characteristic {cmd['aid']}.{cmd['iid']}")
        if name == "set":
            char.set_value(cmd["value"], should_notify=False)  # validates; may raise ValueError
            # Stateless events (ProgrammableSwitchEvent) read back as null but send the value.
            sent = cmd["value"] if char.value is None else char.value
            if "ev" in char.properties["Permissions"]:
                char.broker.publish(sent, char, immediate=True)
            return {"ok": True, "value": sent}
        return {
            "ok": True,
            "value": char.get_value(),
            "format": char.properties["Format"],
            "perms": char.properties["Permissions"],
        }
    if name == "writes":
        return {"ok": True, "writes": driver.writes}
    if name == "info":
        state = driver.state
        return {
            "ok": True,
            "device_id": state.mac,
            "port": state.port,
            "paired": state.paired,
            "config_number": state.config_version,
            "name": driver.accessory.display_name,
        }
    if name == "bump_config":
        driver.config_changed()  # persists and re-announces c# on mDNS
        return {"ok": True, "config_number": driver.state.config_version}
    raise ValueError(f"unknown command {name!r}")


async def _serve_control(
    driver: PeerDriver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            try:
                reply = _run_command(driver, json.loads(line))
            except Exception as err:  # a bad command is answered, never ends the channel
                _LOGGER.info("control command %r failed: %r", line, err)
                reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


# --- process -----------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.peers.accessory_server")
    parser.add_argument("--port", type=int, required=True, help="HAP port on 127.0.0.1")
    parser.add_argument("--state-file", required=True, help="HAP-python persist file")
    parser.add_argument("--pin", default="482-91-735")
    parser.add_argument("--name", help="accessory name (default: recorded Name)")
    parser.add_argument("--mac", help="device id on first start; later the state file's wins")
    parser.add_argument("--control-port", type=int, default=0, help="0: pick a free one")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", action="store_true", help="demo bridge (default)")
    source.add_argument("--database", type=Path, help="recorded GET /accessories JSON")
    parser.add_argument(
        "--exit-with-stdin", action="store_true", help="stop when stdin closes (parent died)"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


class _ParentWatch(asyncio.Protocol):
    """Reads our stdin pipe; its end means the parent process is gone."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_with_stdin:
        await loop.connect_read_pipe(lambda: _ParentWatch(stop), sys.stdin)

    driver = PeerDriver(
        loop=loop,
        address="127.0.0.1",
        port=args.port,
        persist_file=str(args.state_file),
        pincode=args.pin.encode(),
        mac=args.mac,
        # The one mDNS stack of this process, on loopback only.
        async_zeroconf_instance=AsyncZeroconf(interfaces=["127.0.0.1"]),
    )
    if args.database:
        records = json.loads(args.database.read_text())
        driver.add_accessory(build_recorded(driver, records, args.name))
    else:
        driver.add_accessory(build_demo(driver, args.name))

    await driver.async_start()  # HAP server listening, mDNS registered
    control = await asyncio.start_server(
        lambda r, w: _serve_control(driver, r, w), "127.0.0.1", args.control_port
    )
    control_port = control.sockets[0].getsockname()[1]
    _emit(
        "ready",
        {"port": driver.state.port, "device_id": driver.state.mac, "control_port": control_port},
    )
    try:
        await stop.wait()
    finally:
        control.close()
        await driver.async_stop()  # mDNS goodbye, then close


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # HAP frames would flood the log and carry session material.
    logging.getLogger("pyhap.hap_protocol").setLevel(logging.INFO)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
