"""Command line: argument parsing only; the work is in app.py and the sides."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from . import __version__, health, mqtt_users
from .app import App
from .config import Config, load
from .controller import commands as controller_commands
from .errors import BridgeError, ConfigError
from .exposer import bridge_layout
from .exposer.hap_adapter import announced_address
from .exposer.pair_setup import reset_pair_setup_attempts
from .mqtt.tls import FileWarning, TlsFileError, check_files
from .preflight import LISTEN_ALL, load_for_commands, load_for_run

DEFAULT_CONFIG = Path("bridge.yaml")
CONFIG_HELP = "the configuration file (default: ./bridge.yaml)"
DEFAULT_PASSWORD_FILE = Path("deploy/mosquitto/passwd")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _run(config: Config) -> bool:
    """Run until SIGTERM/SIGINT; True when a `restart` request ended the run."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = App(config)
    await app.run(stop)
    return app.restart_requested


def _checked_files(path: Path, config: Config) -> list[FileWarning]:
    """The files `mqtt:` names: a missing or broken one stops here, as a bad key does."""
    try:
        return check_files(config.mqtt)
    except TlsFileError as err:
        raise ConfigError(f"{path}: {err}") from err


def _cmd_run(args: argparse.Namespace) -> int:
    config = load_for_run(args.config)
    warnings = _checked_files(args.config, config)
    _setup_logging(args.log_level or config.log_level)
    for warning in warnings:
        logging.getLogger(__name__).warning("%s: %s", args.config, warning)
    if asyncio.run(_run(config)):
        # Stopped cleanly (state saved); the same command line starts afresh in this very
        # process, so a container, systemd or a terminal sees no exit (docs/api.md).
        logging.getLogger(__name__).warning("Restarting: %s", " ".join(sys.orig_argv))
        logging.shutdown()
        sys.stdout.flush()
        os.execv(sys.executable, sys.orig_argv)  # noqa: S606 - our own command line
    return 0


def _cmd_controller(args: argparse.Namespace) -> int:
    config = load_for_commands(args.config)
    _setup_logging("warning")
    return controller_commands.run(config, args)


def _cmd_reset_pair_setup(args: argparse.Namespace) -> int:
    config = load(args.config)
    for number in bridge_layout.created(config.data_dir):
        previous = reset_pair_setup_attempts(bridge_layout.state_dir(config.data_dir, number))
        before = "an unreadable count" if previous is None else f"{previous} failed attempt(s)"
        which = "" if number == bridge_layout.FIRST else f" of bridge {number}"
        print(f"Pair-setup{which} unlocked: the counter went from {before} to 0.")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    config = load_for_run(args.config)
    for warning in _checked_files(args.config, config):
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK")
    if config.homekit.address in LISTEN_ALL:
        # What `run` would warn about: the address mDNS announces had to be guessed.
        _, notice = announced_address(config.homekit.advertised_address)
        if notice is not None:
            print(f"note: {notice}")
    return 0


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when healthy, 1 otherwise (what a container HEALTHCHECK expects; never 2)."""
    try:
        problems = health.check(load(args.config).data_dir / health.HEALTH_FILE)
    except BridgeError as err:
        problems = [str(err)]
    print("; ".join(problems) or "healthy")
    return 1 if problems else 0


def _cmd_mqtt_user_add(args: argparse.Namespace) -> int:
    login = mqtt_users.add_login(load(args.config), args.device_id, args.password_file)
    print(login.password)
    what = "New password for" if login.replaced else "Added"
    print(
        f"{what} {login.name!r} in {args.password_file}; reload Mosquitto (SIGHUP) to use it.",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqtt-hk-bridge",
        description="Bridge an MQTT broker and Apple HomeKit, in both directions.",
        epilog="`mqtt-hk-bridge <command> -h` describes a command. The daemon is `run`.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", title="commands", metavar="<command>")
    run = controller_commands.add_command(
        sub,
        "run",
        "run the bridge",
        "Stops on SIGTERM or Ctrl-C; prints the HomeKit setup code while unpaired.",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="overrides log_level of the configuration file",
    )
    run.set_defaults(func=_cmd_run)
    check = controller_commands.add_command(
        sub,
        "check-config",
        "check bridge.yaml and this host the way `run` would, then exit",
        "Prints `<file>: OK`, or every problem `run` would stop on, each naming its key.",
    )
    check.set_defaults(func=_cmd_check)
    reset = controller_commands.add_command(
        sub,
        "reset-pair-setup",
        "unlock pairing after 100 wrong setup codes (run on the bridge's machine)",
    )
    reset.set_defaults(func=_cmd_reset_pair_setup)
    healthcheck = controller_commands.add_command(
        sub,
        "healthcheck",
        "exit 0 if the running bridge is connected to MQTT and its HAP server listens",
        "Reads the health report the running bridge keeps in data_dir (what a container's "
        "HEALTHCHECK runs); prints `healthy` or what is wrong and exits 1.",
    )
    healthcheck.set_defaults(func=_cmd_healthcheck)
    mqtt_user = controller_commands.add_command(
        sub, "mqtt-user", "broker logins for the shipped Mosquitto config (deploy/mosquitto)"
    )
    mqtt_user_commands = mqtt_user.add_subparsers(
        dest="mqtt_user_command", required=True, help="what to do with a login"
    )
    mqtt_user_add = mqtt_user_commands.add_parser(
        "add",
        help="print a new password for a device's login and write it to the password file",
        description="Prints a new random password once and writes its PBKDF2-SHA512 entry "
        "(as mosquitto_passwd does) to the password file; refuses a login that could reach "
        "another device's topics.",
    )
    login = mqtt_user_add.add_mutually_exclusive_group(required=True)
    login.add_argument("device_id", nargs="?", help="the device id, which is also its login")
    login.add_argument(
        "--bridge", action="store_true", help="the bridge's own login (all of HomeKit/#)"
    )
    mqtt_user_add.add_argument(
        "--password-file",
        type=Path,
        default=DEFAULT_PASSWORD_FILE,
        help=f"Mosquitto's password file (default: {DEFAULT_PASSWORD_FILE})",
    )
    mqtt_user_add.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS)
    mqtt_user_add.set_defaults(func=_cmd_mqtt_user_add)
    controller_commands.add_subcommands(sub)
    for subparser in sub.choices.values():
        subparser.add_argument(
            "-c", "--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP
        )
        if subparser.get_default("controller_command") is not None:
            subparser.set_defaults(func=_cmd_controller)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # The daemon is started by name (`run`): a bare command only shows what there is.
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except BridgeError as err:
        print(f"mqtt-hk-bridge: {err}", file=sys.stderr)
        return 2
