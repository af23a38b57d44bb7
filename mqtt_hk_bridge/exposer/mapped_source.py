"""Mapped devices: `devices.<id>.services` in bridge.yaml names a device's HAP services and,
per characteristic, its state topic, command topic and how to read and write its payloads
(docs/mapping.md). Each becomes a `DeviceBinding` that `BoundDevices` runs.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import const
from ..api import BridgeApi
from ..config import Config
from ..errors import BridgeError, PayloadError
from ..homekit.catalog import INTEGER_FORMATS, Catalog, CharInfo
from ..mapping_config import AvailabilityMapping, CharMapping, DeviceMapping
from ..mqtt.payloads import HapValue
from ..mqtt.topics import ServiceKey
from .bindings import (
    AvailabilityBinding,
    CharBinding,
    DeviceBinding,
    Reader,
    ResetAfter,
    Siblings,
    Skip,
    Writer,
    neutral_value,
)
from .bound_devices import BoundDevices
from .devices import ExposedDevices
from .transforms import Linear, PayloadView, ValueMap, device_word, render_command

_LOGGER = logging.getLogger(__name__)


def _reader(mapping: CharMapping) -> Reader:
    values = ValueMap(mapping.values) if mapping.values else None
    linear = Linear(mapping.scale, mapping.offset)
    scaled = (mapping.scale, mapping.offset) != (1.0, 0.0)
    path = mapping.json_path

    def read(view: PayloadView) -> Any:
        raw: Any = path.read(view.document) if path is not None else view.text
        if values is not None:
            return values.read(raw)
        return linear.read(raw) if scaled else raw

    def read_own(view: PayloadView) -> Any:
        try:
            return read(view)
        except PayloadError:
            return Skip.NOTHING

    return read_own if mapping.ignore_unmatched else read


def _writer(mapping: CharMapping, info: CharInfo) -> Writer:
    values = None
    if mapping.values or mapping.command_values:
        values = ValueMap(mapping.values or {}, mapping.command_values)
    linear = Linear(mapping.scale, mapping.offset)
    scaled = (mapping.scale, mapping.offset) != (1.0, 0.0)
    integral = info.format in INTEGER_FORMATS

    def write(value: HapValue, _siblings: Siblings) -> str:
        device: Any = value
        if values is not None:
            device = values.write(value)
        elif scaled:
            device = linear.write(value, integral)
        return render_command(mapping.command_template, device)

    return write


def _describe(mapping: CharMapping) -> dict[str, Any]:
    described: dict[str, Any] = {}
    for name in ("state_topic", "command_topic", "command_template", "value", "off_delay"):
        if getattr(mapping, name) is not None:
            described[name] = getattr(mapping, name)
    if mapping.json_path is not None:
        described["json_path"] = str(mapping.json_path)
    if mapping.values:
        described["values"] = dict(mapping.values)
    if mapping.command_values:
        described["command_values"] = {
            device_word(value): word for value, word in mapping.command_values.items()
        }
    if (mapping.scale, mapping.offset) != (1.0, 0.0):
        described.update(scale=mapping.scale, offset=mapping.offset)
    if mapping.ignore_unmatched:
        described["ignore_unmatched"] = True
    if mapping.narrowing is not None:
        described.update(mapping.narrowing.to_json())
    return described


def _availability(mapping: AvailabilityMapping) -> AvailabilityBinding:
    words = {
        mapping.payload_available.casefold(): True,
        mapping.payload_not_available.casefold(): False,
    }
    path = mapping.json_path

    def read(view: PayloadView) -> bool:
        raw: Any = path.read(view.document) if path is not None else view.text
        said = words.get(device_word(raw).casefold())
        if said is None:
            raise PayloadError(
                f"expected {mapping.payload_available!r} or {mapping.payload_not_available!r}, "
                f"got {device_word(raw)[:40]!r}"
            )
        return said

    described: dict[str, Any] = {
        "topic": mapping.topic,
        "payload_available": mapping.payload_available,
        "payload_not_available": mapping.payload_not_available,
    }
    if path is not None:
        described["json_path"] = str(path)
    return AvailabilityBinding(mapping.topic, read, described)


def device_binding(device_id: str, mapping: DeviceMapping, catalog: Catalog) -> DeviceBinding:
    characteristics = []
    for service in mapping.services:
        for char in service.characteristics:
            info = catalog.characteristics[char.characteristic]
            characteristics.append(
                CharBinding(
                    characteristic=char.characteristic,
                    service=ServiceKey(service.service, service.index),
                    state_topic=char.state_topic,
                    read=_reader(char) if char.state_topic else None,
                    command_topic=char.command_topic,
                    write=_writer(char, info) if char.command_topic else None,
                    retain_command=char.retain_command,
                    initial=char.value,
                    describe=_describe(char),
                    reset=None
                    if char.off_delay is None
                    else ResetAfter(char.off_delay, neutral_value(info)),
                    narrowing=char.narrowing,
                )
            )
    availability = (_availability(mapping.availability),) if mapping.availability else ()
    return DeviceBinding(
        device_id=device_id,
        source=const.SOURCE_MAPPED,
        characteristics=tuple(characteristics),
        availability=availability,
        describe={"configured_in": f"devices.{device_id}"},
    )


def bind_mapped_devices(
    *,
    config: Config,
    api: BridgeApi,
    catalog: Catalog,
    devices: ExposedDevices,
    bound: BoundDevices,
) -> None:
    """At start-up: every mapped device in bridge.yaml starts; remembered mapped devices
    whose mapping is gone leave (their aids stay reserved)."""
    mapped = {
        device_id: options.mapping
        for device_id, options in config.devices.items()
        if options.mapping is not None and devices.takes(device_id)
    }
    for device in list(devices.registry.devices.values()):
        if device.source == const.SOURCE_MAPPED and device.device_id not in mapped:
            _LOGGER.info("%s is no longer mapped in the configuration", device.device_id)
            devices.forget(device.device_id)
    for device_id, mapping in mapped.items():
        try:
            bound.bind(device_binding(device_id, mapping, catalog))
        except BridgeError as err:
            bound.refuse(device_id, const.SOURCE_MAPPED, str(err))
            api.event("device_not_mapped", f"devices.{device_id}: {err}", device=device_id)
