"""CLI commands of the controller side; they work without a running daemon, on the same
pairing store (a running daemon follows the file: it takes a pairing made here up within a
second, and lets go of one removed here).

    discover                         accessories on the network (IP)
    pair <device-id> <code> --alias  pair one
    unpair <alias> [--force]         remove a pairing (on the accessory, then here)
    list-pairings                    the stored pairings, each checked live
    accessories <alias> [--json|--compact]
    get <alias> <aid.iid>...         read
    put <alias> <aid.iid>=<value>... write (value coerced to the characteristic's format)
    watch <alias> [--duration s]     print events as they arrive

What each prints is in docs/controller.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from aiohomekit.characteristic_cache import CharacteristicCacheMemory
from aiohomekit.controller import Controller
from aiohomekit.exceptions import (
    AccessoryDisconnectedError,
    AccessoryNotFoundError,
    HomeKitException,
)
from zeroconf.asyncio import AsyncZeroconf

from ..config import Config
from ..errors import BridgeError
from ..homekit.catalog import CharInfo
from ..mqtt import payloads
from .aiohomekit_adapter import start_controller, stop_controller
from .bluetooth import wanted as wanted_bluetooth
from .mirror import CharId, build, char_info, characteristic_name, service_name
from .pairings import (
    PairingError,
    PairingStore,
    discoveries,
    own_hap_device_id,
    pair_accessory,
    stored_mqtt_devices,
    unpair_accessory,
)
from .settings import ControllerSettings

Command = Callable[[Config, argparse.Namespace, TextIO], Awaitable[int]]

#: How long get/put/watch wait for a fresh zeroconf record before using the stored address.
_FIND_BEFORE_CONNECT = 3.0


def _store(config: Config, settings: ControllerSettings) -> PairingStore:
    return PairingStore(config.data_dir / settings.pairing_file)


@contextlib.asynccontextmanager
async def _controller(
    config: Config, cache: CharacteristicCacheMemory | None = None
) -> AsyncIterator[Controller]:
    interfaces = list(config.zeroconf_interfaces) if config.zeroconf_interfaces else None
    zeroconf = AsyncZeroconf(interfaces=interfaces) if interfaces else AsyncZeroconf()
    try:
        controller, browsers = await start_controller(
            zeroconf, cache, bluetooth=wanted_bluetooth(config.controller.bluetooth)
        )
        try:
            yield controller
        finally:
            await stop_controller(controller, browsers)
    finally:
        await zeroconf.async_close()


async def _load(
    controller: Controller,
    cache: CharacteristicCacheMemory,
    alias: str,
    data: dict[str, Any],
    settings: ControllerSettings,
) -> Any:
    """The pairing of `alias`, at the accessory's current address, for one command.

    A command reads the database itself. aiohomekit 4.0.1 also re-reads it, in a background
    task, when a pairing without a cached database meets the accessory's zeroconf record;
    the command then closes the connection under that read, which aiohomekit logs as an
    18-line traceback. Its cache is told the advertised configuration number first, so it
    has nothing to re-read.
    """
    pairing_id = str(data["AccessoryPairingID"])
    with contextlib.suppress(AccessoryNotFoundError):
        # A fresh record (the accessory may have moved) beats the stored address.
        discovery = await controller.async_find(
            pairing_id.lower(), timeout=min(settings.discover_timeout, _FIND_BEFORE_CONNECT)
        )
        cache.async_create_or_update_map(pairing_id, discovery.description.config_num, [])
    return controller.load_pairing(alias, data)


@contextlib.asynccontextmanager
async def _pairing(config: Config, alias: str) -> AsyncIterator[Any]:
    settings = config.controller
    data = _store(config, settings).get(alias)
    cache = CharacteristicCacheMemory()
    async with _controller(config, cache) as controller:
        pairing = await _load(controller, cache, alias, data, settings)
        try:
            yield pairing
        finally:
            await pairing.close()


# ---- the operations (tests call these) ------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """One characteristic in a command's answer: `name` is its topic below the base topic
    (`demo-2/Lightbulb/Brightness`); `error` is set when the accessory refused it."""

    aid: int
    iid: int
    name: str
    value: Any = None
    error: str | None = None

    @property
    def char_id(self) -> CharId:
        return (self.aid, self.iid)


def _names(alias: str, database: list[dict[str, Any]]) -> dict[CharId, str]:
    devices, _ = build(alias, "", database)
    return {
        char.char_id: f"{device.device_id}/{char.key}"
        for device in devices.values()
        for char in device.chars
    }


def _status(body: dict[str, Any]) -> str:
    return f"HAP status {body.get('status')}: {body.get('description') or 'refused'}"


async def discover(config: Config, listen: float | None = None) -> list[dict[str, Any]]:
    settings = config.controller
    store = _store(config, settings)
    async with _controller(config) as controller:
        await asyncio.sleep(settings.discover_timeout if listen is None else listen)
        return discoveries(controller, store, own_hap_device_id(config.data_dir))


async def pair(config: Config, device_id: str, setup_code: str, alias: str) -> dict[str, Any]:
    settings = config.controller
    store = _store(config, settings)
    store.load()
    async with _controller(config) as controller:
        pairing: Any = await pair_accessory(
            controller,
            store,
            device_id=device_id,
            setup_code=setup_code,
            alias=alias,
            find_timeout=settings.discover_timeout,
            own_device_id=own_hap_device_id(config.data_dir),
            mqtt_devices=stored_mqtt_devices(config.data_dir),
        )
        await pairing.close()
    return {"alias": alias, "device_id": device_id.lower()}


async def unpair(config: Config, alias: str, *, force: bool = False) -> bool:
    settings = config.controller
    store = _store(config, settings)
    store.get(alias)
    async with _controller(config) as controller:
        return await unpair_accessory(controller, store, alias, force=force)


async def list_pairings(config: Config) -> list[dict[str, Any]]:
    """The stored pairings with what the MQTT `list-pairings` answer says of each:
    `connected` (reached now), `available` (its database read) and its `devices`."""
    settings = config.controller
    stored = sorted(_store(config, settings).all().items())
    if not stored:
        return []
    cache = CharacteristicCacheMemory()
    async with _controller(config, cache) as controller:

        async def check(alias: str, data: dict[str, Any]) -> dict[str, Any]:
            entry: dict[str, Any] = {
                "alias": alias,
                "device_id": str(data.get("AccessoryPairingID", "")).lower(),
                "connection": data.get("Connection", "IP"),
                "connected": False,
                "available": False,
                "devices": [],
            }
            pairing = await _load(controller, cache, alias, dict(data), settings)
            try:
                async with asyncio.timeout(settings.connect_timeout + settings.request_timeout):
                    database = await pairing.list_accessories_and_characteristics()
                entry["connected"] = bool(pairing.is_connected)
                entry["available"] = True
                entry["devices"] = sorted(build(alias, "", database)[0])
            except (HomeKitException, OSError, TimeoutError):
                pass  # unreachable now: said by connected/available
            finally:
                await pairing.close()
            # Where it was reached (or last seen), as the pairing file now says.
            entry["address"] = data.get("AccessoryIP")
            entry["port"] = data.get("AccessoryPort")
            return entry

        return list(await asyncio.gather(*(check(alias, data) for alias, data in stored)))


async def accessories(config: Config, alias: str) -> list[dict[str, Any]]:
    async with _pairing(config, alias) as pairing:
        return list(await pairing.list_accessories_and_characteristics())


def _find_raw(database: list[dict[str, Any]], aid: int, iid: int) -> dict[str, Any]:
    for accessory in database:
        if accessory["aid"] != aid:
            continue
        for service in accessory["services"]:
            for raw in service["characteristics"]:
                if raw["iid"] == iid:
                    return dict(raw)
    raise BridgeError(f"the accessory has no characteristic {aid}.{iid}")


def parse_char_id(text: str) -> CharId:
    aid, sep, iid = text.partition(".")
    if not sep or not aid.isdigit() or not iid.isdigit():
        raise BridgeError(f"{text!r} is not <aid>.<iid> (for example 1.10)")
    return int(aid), int(iid)


async def get(config: Config, alias: str, ids: list[CharId]) -> list[Reading]:
    async with _pairing(config, alias) as pairing:
        database = await pairing.list_accessories_and_characteristics()
        names = _names(alias, database)
        for aid, iid in ids:
            _find_raw(database, aid, iid)  # an unknown id is an error here, not a status
        result = dict(await pairing.get_characteristics(ids))
    readings = []
    for aid, iid in ids:
        body = result.get((aid, iid), {})
        error = None if "value" in body else _status(body)
        readings.append(Reading(aid, iid, names[(aid, iid)], body.get("value"), error))
    return readings


async def put(config: Config, alias: str, assignments: list[tuple[CharId, str]]) -> list[Reading]:
    """Write `aid.iid=value` pairs; each value is checked against the accessory's metadata."""
    async with _pairing(config, alias) as pairing:
        database = await pairing.list_accessories_and_characteristics()
        names = _names(alias, database)
        writes = []
        for (aid, iid), text in assignments:
            raw = _find_raw(database, aid, iid)
            info = char_info(characteristic_name(str(raw["type"])), raw)
            if not info.writable:
                raise BridgeError(f"{aid}.{iid} ({names[(aid, iid)]}) is read-only")
            writes.append((aid, iid, payloads.decode(text.encode(), info)))
        result = dict(await pairing.put_characteristics(writes))
    readings = []
    for aid, iid, value in writes:
        body = result.get((aid, iid), {})
        error = _status(body) if body.get("status") else None
        readings.append(Reading(aid, iid, names[(aid, iid)], value, error))
    return readings


async def watch(config: Config, alias: str, out: TextIO, duration: float | None = None) -> int:
    """Print `time  aid.iid  name  value` for each event until interrupted (or `duration`)."""
    count = 0
    async with _pairing(config, alias) as pairing:
        database = await pairing.list_accessories_and_characteristics()
        names = _names(alias, database)
        ids = [
            (accessory["aid"], raw["iid"])
            for accessory in database
            for service in accessory["services"]
            for raw in service["characteristics"]
            if "ev" in raw.get("perms", ())
        ]

        def on_event(data: dict[CharId, dict[str, Any]]) -> None:
            nonlocal count
            for (aid, iid), body in data.items():
                if "value" in body:
                    count += 1
                    reading = Reading(aid, iid, names.get((aid, iid), "?"), body["value"])
                    print(f"{_now()}  {format_reading(reading)}", file=out, flush=True)

        stop = pairing.dispatcher_connect(on_event)
        try:
            await pairing.subscribe(ids)
            if duration is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(duration)
        finally:
            stop()
    return count


# ---- what the commands print -----------------------------------------------------------
def _now() -> str:
    return datetime.now().astimezone().isoformat(sep=" ", timespec="milliseconds")


def format_reading(reading: Reading) -> str:
    """`2.10  demo-2/Lightbulb/Brightness  55`, or the HAP status instead of a value."""
    shown = reading.error if reading.error else payloads.encode(reading.value)
    return f"{reading.aid}.{reading.iid}  {reading.name}  {shown}"


def format_topics(alias: str, database: list[dict[str, Any]]) -> str:
    """One line per characteristic as the bridge mirrors it on MQTT:
    `aid.iid  <device>/<Service>/<Characteristic> [format perms] = value`."""
    devices, values = build(alias, "", database)
    lines = []
    for device in devices.values():
        lines.append(f"{device.device_id} (aid {device.aid}): {device.name}")
        for char in device.chars:
            value = values.get(char.char_id)
            shown = "" if value is None else f" = {payloads.encode(value)[:60]}"
            lines.append(
                f"  {char.aid}.{char.iid:<5} {char.key} "
                f"[{char.info.format} {','.join(char.info.perms)}]{shown}"
            )
    return "\n".join(lines)


def _metadata(info: CharInfo) -> str:
    """`int, percentage, 0..100 step 1` or `uint8, valid 0,1,2`: what a value may be."""
    parts = [info.format]
    if info.unit:
        parts.append(info.unit)
    if info.min_value is not None or info.max_value is not None:
        low = "" if info.min_value is None else f"{info.min_value:g}"
        high = "" if info.max_value is None else f"{info.max_value:g}"
        parts.append(f"{low}..{high}" + (f" step {info.min_step:g}" if info.min_step else ""))
    if info.valid_values is not None:
        parts.append("valid " + ",".join(str(value) for value in info.valid_values))
    return ", ".join(parts)


def format_compact(database: list[dict[str, Any]]) -> str:
    """homekit_python's compact listing: a service per line, `aid.iid: >Service<`, then
    `  aid.iid: value >Characteristic< [perms] (format, unit, range)` per characteristic."""
    lines = []
    for accessory in sorted(database, key=lambda acc: int(acc["aid"])):
        aid = accessory["aid"]
        for service in accessory.get("services", ()):
            lines.append(f"{aid}.{service['iid']}: >{service_name(str(service['type']))}<")
            for raw in service.get("characteristics", ()):
                info = char_info(characteristic_name(str(raw["type"])), raw)
                value = raw.get("value")
                shown = "-" if value is None else payloads.encode(value)[:60]
                lines.append(
                    f"  {aid}.{raw['iid']}: {shown} >{info.name}< "
                    f"[{','.join(info.perms)}] ({_metadata(info)})"
                )
    return "\n".join(lines)


async def _cmd_discover(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    found = await discover(config, args.timeout)
    if args.json:
        print(json.dumps(found, indent=1), file=out)
        return 0
    if not found:
        print("No HomeKit accessories found.", file=out)
    for item in found:
        if item["this_bridge"]:
            state = "this bridge itself (its HomeKit side)"
        elif item["alias"]:
            state = f"paired as {item['alias']}"
        else:
            state = "paired elsewhere" if item["paired"] else "unpaired"
        print(
            f"{item['device_id']}  {item['name']}  model={item['model']} "
            f"category={item['category']} transport={item['transport']} "
            f"{item['address']}:{item['port']}  {state}",
            file=out,
        )
    return 0


async def _cmd_pair(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    result = await pair(config, args.device_id, args.setup_code, args.alias)
    print(
        f"Paired {result['device_id']} as {result['alias']}; its topics are "
        f"{config.base_topic}/{result['alias']}[-<aid>]/...",
        file=out,
    )
    return 0


async def _cmd_unpair(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    confirmed = await unpair(config, args.alias, force=args.force)
    note = "" if confirmed else " (forgotten here only; the accessory did not confirm)"
    print(f"Unpaired {args.alias}{note}", file=out)
    return 0


async def _cmd_list_pairings(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    items = await list_pairings(config)
    if args.json:
        print(json.dumps(items, indent=1), file=out)
        return 0
    if not items:
        print(
            "No pairings. `mqtt-hk-bridge discover` lists accessories, and "
            "`mqtt-hk-bridge pair <device-id> <setup-code> --alias <name>` pairs one.",
            file=out,
        )
    for item in items:
        state = "online" if item["available"] else "unreachable now"
        devices = f"  devices: {', '.join(item['devices'])}" if item["devices"] else ""
        print(
            f"{item['alias']}  {item['device_id']}  {item['connection']} "
            f"{item['address']}:{item['port']}  {state}{devices}",
            file=out,
        )
    return 0


async def _cmd_accessories(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    database = await accessories(config, args.alias)
    if args.json:
        print(json.dumps(database, indent=1), file=out)
    elif args.compact:
        print(format_compact(database), file=out)
    else:
        print(format_topics(args.alias, database), file=out)
    return 0


async def _cmd_get(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    readings = await get(config, args.alias, [parse_char_id(text) for text in args.ids])
    for reading in readings:
        print(format_reading(reading), file=out)
    return 1 if any(reading.error for reading in readings) else 0


async def _cmd_put(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    assignments = []
    for text in args.assignments:
        target, sep, value = text.partition("=")
        if not sep:
            raise BridgeError(f"{text!r} is not <aid>.<iid>=<value>")
        assignments.append((parse_char_id(target), value))
    readings = await put(config, args.alias, assignments)
    for reading in readings:
        verdict = f"refused: {reading.error}" if reading.error else "written"
        shown = payloads.encode(reading.value)
        print(f"{reading.aid}.{reading.iid}  {reading.name}  {shown}  {verdict}", file=out)
    return 1 if any(reading.error for reading in readings) else 0


async def _cmd_watch(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    await watch(config, args.alias, out, args.duration)
    return 0


_ALIAS_HELP = "the pairing's alias, as given to `pair` (see `list-pairings`)"
_JSON_HELP = "print JSON instead of text"


def add_command(
    subparsers: Any, name: str, summary: str, details: str = ""
) -> argparse.ArgumentParser:
    """A subcommand whose `-h` starts with the sentence the command list shows."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. {details}".strip()
    )
    return parser


def add_subcommands(subparsers: Any) -> None:
    """Add the controller commands to the CLI's subparsers; `run()` executes one."""
    p = add_command(
        subparsers,
        "discover",
        "list HomeKit accessories on the network",
        "One line each: device id, name, model, category, transport, address, and whether "
        "it is unpaired, paired elsewhere, paired here (its alias) or this bridge itself.",
    )
    p.add_argument("--timeout", type=float, help="seconds to listen (default: config)")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(controller_command=_cmd_discover)

    p = add_command(
        subparsers,
        "pair",
        "pair with a HomeKit accessory",
        "Its characteristics then appear on MQTT under <base_topic>/<alias>; a running "
        "bridge takes the pairing up within a second.",
    )
    p.add_argument("device_id", help="as `discover` shows it, e.g. AA:BB:CC:DD:EE:FF")
    p.add_argument("setup_code", help="the accessory's code, e.g. 482-91-735")
    p.add_argument("--alias", required=True, help="device id on MQTT, e.g. kitchen")
    p.set_defaults(controller_command=_cmd_pair)

    p = add_command(
        subparsers,
        "unpair",
        "remove a pairing",
        "Tells the accessory first; without --force a pairing it cannot be told about is kept.",
    )
    p.add_argument("alias", help=_ALIAS_HELP)
    p.add_argument("--force", action="store_true", help="forget it even if unreachable")
    p.set_defaults(controller_command=_cmd_unpair)

    p = add_command(
        subparsers,
        "list-pairings",
        "show the stored pairings, each checked live",
        "One line each: alias, device id, address, online or unreachable now, and its "
        "devices on MQTT; --json gives the fields of the MQTT list-pairings answer.",
    )
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(controller_command=_cmd_list_pairings)

    p = add_command(
        subparsers,
        "accessories",
        "show a paired accessory's database",
        "By default one line per characteristic with its MQTT topic, format, permissions "
        "and value.",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="the raw GET /accessories answer")
    group.add_argument(
        "--compact",
        action="store_true",
        help="homekit_python's compact listing: services, then values, perms, units, ranges",
    )
    p.add_argument("alias", help=_ALIAS_HELP)
    p.set_defaults(controller_command=_cmd_accessories)

    p = add_command(
        subparsers,
        "get",
        "read characteristics",
        "Prints `aid.iid  <topic below the base topic>  value` for each.",
    )
    p.add_argument("alias", help=_ALIAS_HELP)
    p.add_argument("ids", nargs="+", metavar="aid.iid", help="accessory and instance id, e.g. 2.10")
    p.set_defaults(controller_command=_cmd_get)

    p = add_command(
        subparsers,
        "put",
        "write characteristics",
        "Each value is checked against the accessory's format and range first; prints "
        "`written` or the accessory's refusal for each.",
    )
    p.add_argument("alias", help=_ALIAS_HELP)
    p.add_argument(
        "assignments",
        nargs="+",
        metavar="aid.iid=value",
        help="e.g. 2.10=55 (booleans as 1/0, true/false or on/off)",
    )
    p.set_defaults(controller_command=_cmd_put)

    p = add_command(
        subparsers,
        "watch",
        "print events until interrupted",
        "One line per event: local time, aid.iid, topic below the base topic, value.",
    )
    p.add_argument("alias", help=_ALIAS_HELP)
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(controller_command=_cmd_watch)


async def run_async(config: Config, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    command: Command = args.controller_command
    try:
        return await command(config, args, out)
    except (BridgeError, PairingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (AccessoryDisconnectedError, AccessoryNotFoundError, OSError, TimeoutError) as err:
        print(f"error: cannot reach the accessory: {err or type(err).__name__}", file=sys.stderr)
        return 1
    except HomeKitException as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def run(config: Config, args: argparse.Namespace) -> int:
    """Run the command `args` names (from add_subcommands) on its own event loop."""
    try:
        return asyncio.run(run_async(config, args))
    except KeyboardInterrupt:
        return 130
