"""What HAP PDUs are made of, for HAP-BLE and HAP over Thread alike (CoAP bodies carry the
HAP-BLE PDUs): opcodes, status codes and the parameter types of PDU bodies, written from the
HAP specification."""

from __future__ import annotations

from enum import IntEnum


class OpCode(IntEnum):
    CHARACTERISTIC_SIGNATURE_READ = 0x01
    CHARACTERISTIC_WRITE = 0x02
    CHARACTERISTIC_READ = 0x03
    CHARACTERISTIC_TIMED_WRITE = 0x04
    CHARACTERISTIC_EXECUTE_WRITE = 0x05
    SERVICE_SIGNATURE_READ = 0x06
    CHARACTERISTIC_CONFIGURATION = 0x07
    PROTOCOL_CONFIGURATION = 0x08
    # HAP over Thread only: the accessory database, and event subscriptions.
    DATABASE_READ = 0x09
    SUBSCRIBE = 0x0B
    UNSUBSCRIBE = 0x0C


class PduStatus(IntEnum):
    SUCCESS = 0x00
    UNSUPPORTED_PDU = 0x01
    MAX_PROCEDURES = 0x02
    INSUFFICIENT_AUTHORIZATION = 0x03
    INVALID_INSTANCE_ID = 0x04
    INSUFFICIENT_AUTHENTICATION = 0x05
    INVALID_REQUEST = 0x06


class PduParam(IntEnum):
    """TLV types inside PDU bodies ("HAP-Param" types, and HAP over Thread's database tree)."""

    SEPARATOR = 0x00
    VALUE = 0x01
    ADDITIONAL_AUTHORIZATION_DATA = 0x02
    ORIGIN = 0x03
    CHARACTERISTIC_TYPE = 0x04
    CHARACTERISTIC_INSTANCE_ID = 0x05
    SERVICE_TYPE = 0x06
    SERVICE_INSTANCE_ID = 0x07
    TTL = 0x08
    RETURN_RESPONSE = 0x09
    CHARACTERISTIC_PROPERTIES = 0x0A
    USER_DESCRIPTION = 0x0B
    PRESENTATION_FORMAT = 0x0C
    VALID_RANGE = 0x0D
    STEP_VALUE = 0x0E
    SERVICE_PROPERTIES = 0x0F
    LINKED_SERVICES = 0x10
    VALID_VALUES = 0x11
    # The accessory database (DATABASE_READ) nests characteristics in services in accessories.
    CHARACTERISTIC = 0x13
    CHARACTERISTICS = 0x14
    SERVICE = 0x15
    SERVICES = 0x16
    ACCESSORIES = 0x18
    ACCESSORY = 0x19
    ACCESSORY_IID = 0x1A
