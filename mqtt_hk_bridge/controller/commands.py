"""CLI commands of the controller side; they work without a running daemon, on the same
pairing store (a running daemon follows the file: it takes a pairing made here up within a
second, and lets go of one removed here).

    discover                         accessories on the network (IP)
    pair <device-id> <code> --alias  pair one
    unpair <alias> [--force]         remove a pairing (on the accessory, then here)
    list-pairings                    what the store holds
    accessories <alias> [--json|--compact]
    get <alias> <aid.iid>...         read
    put <alias> <aid.iid>=<value>... write (value coerced to the characteristic's format)
    watch <alias> [--duration s]     print events as they arrive
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO

from aiohomekit.controller import Controller
from aiohomekit.exceptions import AccessoryNotFoundError, HomeKitException
from zeroconf.asyncio import AsyncZeroconf

from ..config import Config
from ..errors import BridgeError
from ..mqtt import payloads
from .aiohomekit_adapter import start_controller, stop_controller
from .mirror import CharId, build, char_info, characteristic_name
from .pairings import (
    PairingError,
    PairingStore,
    discoveries,
    pair_accessory,
    unpair_accessory,
)
from .settings import ControllerSettings

Command = Callable[[Config, argparse.Namespace, TextIO], Awaitable[int]]

#: How long get/put/watch wait for a fresh zeroconf record before using the stored address.
_FIND_BEFORE_CONNECT = 3.0


def _store(config: Config, settings: ControllerSettings) -> PairingStore:
    return PairingStore(config.data_dir / settings.pairing_file)


@contextlib.asynccontextmanager
async def _controller(config: Config) -> AsyncIterator[Controller]:
    interfaces = list(config.zeroconf_interfaces) if config.zeroconf_interfaces else None
    zeroconf = AsyncZeroconf(interfaces=interfaces) if interfaces else AsyncZeroconf()
    try:
        controller, browsers = await start_controller(zeroconf)
        try:
            yield controller
        finally:
            await stop_controller(controller, browsers)
    finally:
        await zeroconf.async_close()


@contextlib.asynccontextmanager
async def _pairing(config: Config, alias: str) -> AsyncIterator[Any]:
    settings = config.controller
    data = _store(config, settings).get(alias)
    async with _controller(config) as controller:
        # A fresh record (the accessory may have moved) beats the stored address.
        with contextlib.suppress(AccessoryNotFoundError):
            await controller.async_find(
                str(data["AccessoryPairingID"]).lower(),
                timeout=min(settings.discover_timeout, _FIND_BEFORE_CONNECT),
            )
        pairing: Any = controller.load_pairing(alias, data)
        try:
            yield pairing
        finally:
            await pairing.close()


# ---- the operations (tests call these) ------------------------------------------------
async def discover(config: Config, listen: float | None = None) -> list[dict[str, Any]]:
    settings = config.controller
    store = _store(config, settings)
    async with _controller(config) as controller:
        await asyncio.sleep(settings.discover_timeout if listen is None else listen)
        return discoveries(controller, store)


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
        )
        await pairing.close()
    return {"alias": alias, "device_id": device_id.lower()}


async def unpair(config: Config, alias: str, *, force: bool = False) -> bool:
    settings = config.controller
    store = _store(config, settings)
    store.get(alias)
    async with _controller(config) as controller:
        return await unpair_accessory(controller, store, alias, force=force)


def list_pairings(config: Config) -> list[dict[str, Any]]:
    store = _store(config, config.controller)
    return [
        {
            "alias": alias,
            "device_id": str(data.get("AccessoryPairingID", "")).lower(),
            "connection": data.get("Connection", "IP"),
            "address": data.get("AccessoryIP"),
            "port": data.get("AccessoryPort"),
        }
        for alias, data in sorted(store.all().items())
    ]


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


async def get(config: Config, alias: str, ids: list[CharId]) -> dict[CharId, dict[str, Any]]:
    async with _pairing(config, alias) as pairing:
        return dict(await pairing.get_characteristics(ids))


async def put(
    config: Config, alias: str, assignments: list[tuple[CharId, str]]
) -> dict[CharId, dict[str, Any]]:
    """Write `aid.iid=value` pairs; each value is checked against the accessory's metadata."""
    async with _pairing(config, alias) as pairing:
        database = await pairing.list_accessories_and_characteristics()
        writes = []
        for (aid, iid), text in assignments:
            raw = _find_raw(database, aid, iid)
            info = char_info(characteristic_name(str(raw["type"])), raw)
            if not info.writable:
                raise BridgeError(f"{aid}.{iid} ({info.name}) is read-only")
            writes.append((aid, iid, payloads.decode(text.encode(), info)))
        result = await pairing.put_characteristics(writes)
        return {key: value for key, value in dict(result).items() if value.get("status")}


async def watch(config: Config, alias: str, out: TextIO, duration: float | None = None) -> int:
    """Print `aid.iid value` for each event until interrupted (or `duration` passes)."""
    count = 0
    async with _pairing(config, alias) as pairing:
        database = await pairing.list_accessories_and_characteristics()
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
                    print(f"{aid}.{iid} {payloads.encode(body['value'])}", file=out, flush=True)

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


# ---- argparse glue ---------------------------------------------------------------------
def format_compact(alias: str, database: list[dict[str, Any]]) -> str:
    """One line per characteristic: `aid.iid  topic-suffix  format perms = value`."""
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


async def _cmd_discover(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    found = await discover(config, args.timeout)
    if args.json:
        print(json.dumps(found, indent=1), file=out)
        return 0
    if not found:
        print("No HomeKit accessories found.", file=out)
    for item in found:
        state = (
            f"paired as {item['alias']}"
            if item["alias"]
            else ("paired elsewhere" if item["paired"] else "unpaired")
        )
        print(
            f"{item['device_id']}  {item['name']}  model={item['model']} "
            f"category={item['category']} transport={item['transport']} "
            f"{item['address']}:{item['port']}  {state}",
            file=out,
        )
    return 0


async def _cmd_pair(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    result = await pair(config, args.device_id, args.setup_code, args.alias)
    print(f"Paired {result['device_id']} as {result['alias']}", file=out)
    return 0


async def _cmd_unpair(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    confirmed = await unpair(config, args.alias, force=args.force)
    note = "" if confirmed else " (forgotten here only; the accessory did not confirm)"
    print(f"Unpaired {args.alias}{note}", file=out)
    return 0


async def _cmd_list_pairings(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    items = list_pairings(config)
    if args.json:
        print(json.dumps(items, indent=1), file=out)
    for item in [] if args.json else items:
        print(
            f"{item['alias']}  {item['device_id']}  {item['connection']} "
            f"{item['address']}:{item['port']}",
            file=out,
        )
    return 0


async def _cmd_accessories(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    database = await accessories(config, args.alias)
    if args.json:
        print(json.dumps(database, indent=1), file=out)
    else:
        print(format_compact(args.alias, database), file=out)
    return 0


async def _cmd_get(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    ids = [parse_char_id(text) for text in args.ids]
    result = await get(config, args.alias, ids)
    failed = 0
    for aid, iid in ids:
        body = result.get((aid, iid), {})
        if "value" in body:
            print(f"{aid}.{iid} {payloads.encode(body['value'])}", file=out)
        else:
            failed += 1
            print(f"{aid}.{iid} error {body.get('status')}: {body.get('description')}", file=out)
    return 1 if failed else 0


async def _cmd_put(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    assignments = []
    for text in args.assignments:
        target, sep, value = text.partition("=")
        if not sep:
            raise BridgeError(f"{text!r} is not <aid>.<iid>=<value>")
        assignments.append((parse_char_id(target), value))
    failures = await put(config, args.alias, assignments)
    for (aid, iid), body in failures.items():
        print(f"{aid}.{iid} refused {body.get('status')}: {body.get('description')}", file=out)
    return 1 if failures else 0


async def _cmd_watch(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    await watch(config, args.alias, out, args.duration)
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Add the controller commands to the CLI's subparsers; `run()` executes one."""
    p = subparsers.add_parser("discover", help="list HomeKit accessories on the network")
    p.add_argument("--timeout", type=float, help="seconds to listen (default: config)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(controller_command=_cmd_discover)

    p = subparsers.add_parser("pair", help="pair with a HomeKit accessory")
    p.add_argument("device_id", help="as `discover` shows it, e.g. AA:BB:CC:DD:EE:FF")
    p.add_argument("setup_code", help="the accessory's code, e.g. 482-91-735")
    p.add_argument("--alias", required=True, help="device id on MQTT, e.g. kitchen")
    p.set_defaults(controller_command=_cmd_pair)

    p = subparsers.add_parser("unpair", help="remove a pairing")
    p.add_argument("alias")
    p.add_argument("--force", action="store_true", help="forget it even if unreachable")
    p.set_defaults(controller_command=_cmd_unpair)

    p = subparsers.add_parser("list-pairings", help="show the stored pairings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(controller_command=_cmd_list_pairings)

    p = subparsers.add_parser("accessories", help="show a paired accessory's database")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="raw GET /accessories")
    group.add_argument("--compact", action="store_true", help="one line each (default)")
    p.add_argument("alias")
    p.set_defaults(controller_command=_cmd_accessories)

    p = subparsers.add_parser("get", help="read characteristics")
    p.add_argument("alias")
    p.add_argument("ids", nargs="+", metavar="aid.iid")
    p.set_defaults(controller_command=_cmd_get)

    p = subparsers.add_parser("put", help="write characteristics")
    p.add_argument("alias")
    p.add_argument("assignments", nargs="+", metavar="aid.iid=value")
    p.set_defaults(controller_command=_cmd_put)

    p = subparsers.add_parser("watch", help="print events until interrupted")
    p.add_argument("alias")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(controller_command=_cmd_watch)


async def run_async(config: Config, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    command: Command = args.controller_command
    try:
        return await command(config, args, out)
    except (BridgeError, PairingError) as err:
        print(f"error: {err}", file=sys.stderr)
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
