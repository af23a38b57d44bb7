"""What `run` needs of this host, checked before anything starts.

`check-config` runs exactly these checks, so whatever `run` would refuse, `check-config`
refuses first, with the same message. Names people write are resolved here: an interface
name in `zeroconf.interfaces`, `homekit.address` or `homekit.advertised_address` becomes
its IPv4 address(es).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import tempfile
from pathlib import Path

from .config import Config, load
from .errors import ConfigError
from .exposer import bridge_layout
from .instance_lock import DataDirInUseError, check_free
from .interfaces import ipv4_addresses, is_ip_address

LISTEN_ALL = ("0.0.0.0", "::")  # noqa: S104 - the HAP server's "every interface"
#: Longest command line quoted when naming the process that holds a port.
_COMMAND_SHOWN = 80


def load_for_run(path: Path) -> Config:
    """bridge.yaml checked for `run` (and `check-config`): the file, then this host."""
    return check_for_run(load(path), str(path))


def load_for_commands(path: Path) -> Config:
    """bridge.yaml for the controller commands: the file, with interface names resolved."""
    config = load(path)
    problems: list[str] = []
    config = _resolve_interfaces(config, problems)
    _raise(str(path), problems)
    return config


def check_for_run(config: Config, source: str) -> Config:
    """Every problem `run` would meet on this host, all at once, as one ConfigError."""
    problems: list[str] = []
    config = _resolve_interfaces(config, problems)
    homekit = config.homekit
    address = homekit.address
    if address not in LISTEN_ALL:
        address = _resolve_one(address, "homekit.address", problems) or address
    advertised = homekit.advertised_address
    if advertised is not None:
        advertised = _resolve_one(advertised, "homekit.advertised_address", problems)
    config = dataclasses.replace(
        config,
        homekit=dataclasses.replace(homekit, address=address, advertised_address=advertised),
    )
    problems += _data_dir_problems(config.data_dir)
    if not problems:  # a port check on an address that does not parse says nothing new
        # Bridge 1, and every other bridge an earlier run opened: they open at start.
        for number in bridge_layout.created(config.data_dir):
            if number > homekit.bridges:
                continue
            port_problem = listen_problem(address, bridge_layout.port(homekit.port, number))
            if port_problem is not None:
                problems.append(bridge_layout.port_problem(number, port_problem))
    _raise(source, problems)
    return config


def _raise(source: str, problems: list[str]) -> None:
    if problems:
        raise ConfigError("\n".join(f"{source}: {problem}" for problem in problems))


# ---- addresses and interfaces ---------------------------------------------------------


def _interface_names() -> str:
    return ", ".join(sorted(ipv4_addresses())) or "none"


def _resolve_one(text: str, key: str, problems: list[str]) -> str | None:
    """An IP address as it is; an interface name as its first IPv4 address."""
    addresses = _resolve(text, key, problems)
    return addresses[0] if addresses else None


def _resolve(text: str, key: str, problems: list[str]) -> list[str]:
    if is_ip_address(text):
        return [text]
    interfaces = ipv4_addresses()
    if text not in interfaces:
        problems.append(
            f"{key}: {text!r} is neither an IP address nor a network interface of this host "
            f"(interfaces: {_interface_names()})"
        )
        return []
    if not interfaces[text]:
        problems.append(f"{key}: interface {text!r} has no IPv4 address")
    return interfaces[text]


def _resolve_interfaces(config: Config, problems: list[str]) -> Config:
    if config.zeroconf_interfaces is None:
        return config
    resolved: list[str] = []
    for index, name in enumerate(config.zeroconf_interfaces):
        for address in _resolve(name, f"zeroconf.interfaces[{index}]", problems):
            if address not in resolved:
                resolved.append(address)
    return dataclasses.replace(config, zeroconf_interfaces=tuple(resolved))


# ---- the HAP port -----------------------------------------------------------------------


def listen_problem(address: str, port: int) -> str | None:
    """Why the HAP server could not listen on address:port, or None when it can."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As asyncio's create_server does: a port in TIME_WAIT is free, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as err:
            return describe_listen_error(address, port, err)
    return None


def describe_listen_error(address: str, port: int, err: OSError) -> str:
    """The message for a failed bind of the HAP server, naming the key to change."""
    if err.errno == errno.EADDRINUSE:
        holder = port_holder(port)
        by = f" by {holder}" if holder else ""
        return (
            f"homekit.port: port {port} is already in use{by}; stop that process or set "
            "homekit.port to a free port"
        )
    if err.errno == errno.EACCES:
        return (
            f"homekit.port: port {port} needs more privileges than this user has; set "
            "homekit.port to 1024 or above (the default is 51826)"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return (
            f"homekit.address: {address} is not an address of this host; use one of its "
            f"addresses, an interface name ({_interface_names()}) or 0.0.0.0 for all"
        )
    return f"homekit.address, homekit.port: cannot listen on {address}:{port}: {err.strerror}"


def port_holder(port: int) -> str | None:
    """`pid 123 (python3 -m ...)` of the process listening on TCP `port`, when /proc says."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    proc = Path("/proc")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue  # gone, or another user's
        if links & {f"socket:[{inode}]" for inode in inodes}:
            return f"pid {entry.name} ({_command_line(entry)})"
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXADDR:HEXPORT; state 0A is LISTEN; field 9 the inode.
            if len(fields) <= 9 or fields[3] != "0A":
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _command_line(proc_dir: Path) -> str:
    try:
        raw = (proc_dir / "cmdline").read_bytes()
    except OSError:
        return "unknown command"
    text = raw.replace(b"\x00", b" ").decode("utf-8", "replace").strip() or "unknown command"
    return text if len(text) <= _COMMAND_SHOWN else text[: _COMMAND_SHOWN - 3] + "..."


# ---- data_dir ---------------------------------------------------------------------------


def _data_dir_problems(data_dir: Path) -> list[str]:
    """Whether the state files can be written there; tried for real (root passes every
    `os.access` test, a read-only file system does not), leaving nothing behind."""
    if not data_dir.exists():
        missing = [data_dir, *(p for p in data_dir.parents if not p.exists())]
        try:
            data_dir.mkdir(parents=True)
        except OSError as err:
            return [f"data_dir: cannot create {data_dir}: {err.strerror}"]
        for created in missing:
            created.rmdir()
        return []
    if not data_dir.is_dir():
        return [f"data_dir: {data_dir} is not a directory"]
    owner = data_dir.stat().st_uid
    if owner != os.geteuid() and os.geteuid() != 0:
        return [
            f"data_dir: {data_dir} belongs to another user (uid {owner}); the bridge keeps it "
            "private (mode 0700), so it must own it"
        ]
    try:
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as err:
        return [f"data_dir: cannot write in {data_dir}: {err.strerror}"]
    try:
        check_free(data_dir)
    except DataDirInUseError as err:
        return [str(err)]
    return []
