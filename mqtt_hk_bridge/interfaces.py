"""This host's network interfaces: a name people write (`eth0`, `lo`) -> its addresses."""

from __future__ import annotations

import ipaddress

import ifaddr


def ipv4_addresses() -> dict[str, list[str]]:
    """Interface name -> its IPv4 addresses, in the order the system lists them."""
    return {
        adapter.name: [str(ip.ip) for ip in adapter.ips if ip.is_IPv4]
        for adapter in ifaddr.get_adapters()
    }


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def first_lan_address() -> str | None:
    """The first IPv4 address that is neither loopback nor link-local, if there is one."""
    for addresses in ipv4_addresses().values():
        for address in addresses:
            parsed = ipaddress.IPv4Address(address)
            if not (parsed.is_loopback or parsed.is_link_local):
                return address
    return None
