"""Topic words, payload words and defaults: the public contract, each with its why."""

from __future__ import annotations

from typing import Final

#: The default first topic level; the same as the existing mqtt2homekit bridges use.
DEFAULT_BASE_TOPIC: Final = "HomeKit"

#: Device id of the bridge's own subtree (`HomeKit/bridge/...`); no device may take it.
BRIDGE_DEVICE_ID: Final = "bridge"

#: Last topic level of a command to a device (Home app write -> device, Node-RED -> accessory).
SET_SUFFIX: Final = "set"
#: Last topic level asking the bridge for a fresh read of a controller-side characteristic.
GET_SUFFIX: Final = "get"
#: Topic level under a device for its availability (the device's Last Will).
AVAILABILITY: Final = "availability"

#: Payload words for availability; `offline` is what ESP sketches put in their Last Will.
ONLINE: Final = "online"
OFFLINE: Final = "offline"

#: Topics under `<base>/bridge/`.
BRIDGE_STATE: Final = "state"  # online/offline, retained, our Last Will
BRIDGE_INFO: Final = "info"  # retained JSON: version, HAP id, port, paired
BRIDGE_DEVICES: Final = "devices"  # retained JSON catalogue of every device
BRIDGE_EVENT: Final = "event"  # JSON errors and notices a user must see
BRIDGE_REQUEST: Final = "request"  # request/<action>, JSON body
BRIDGE_RESPONSE: Final = "response"  # response/<action>, transaction echoed
#: The words above: an `instance` name (`<base>/bridge/<instance>/...`) may not be one.
BRIDGE_WORDS: Final = frozenset(
    {BRIDGE_STATE, BRIDGE_INFO, BRIDGE_DEVICES, BRIDGE_EVENT, BRIDGE_REQUEST, BRIDGE_RESPONSE}
)

#: Where an accessory-side device comes from: our own topic layout (the default source).
SOURCE_HOMEKIT_TOPICS: Final = "homekit_topics"
#: ... a `devices.<id>.services` mapping in bridge.yaml (always on when one is configured).
SOURCE_MAPPED: Final = "mapped"
#: ... a Home Assistant MQTT discovery config (Zigbee2MQTT, Tasmota, ESPHome publish them).
SOURCE_HOMEASSISTANT_DISCOVERY: Final = "homeassistant_discovery"
#: The `origin` name of the discovery configs the bridge publishes for the accessories it
#: controls; the discovery source skips them, or each would come back as an MQTT device.
DISCOVERY_ORIGIN: Final = "mqtt-hk-bridge"

#: The HAP side's state file in data_dir (keys, pairings, and its device id as `mac`).
HAP_STATE_FILE: Final = "homekit-state.json"
#: The accessory side's devices (exposer/device_store.py); the controller side reads their ids.
ACCESSORY_DEVICES_FILE: Final = "accessory-devices.json"

#: Origin of a device in the catalogue.
ORIGIN_MQTT: Final = "mqtt"
ORIGIN_HOMEKIT: Final = "homekit"

#: The service every HAP accessory carries; its topics fill it rather than add a service.
INFO_SERVICE: Final = "AccessoryInformation"

#: Largest payload we parse: every HAP value fits, and a 1 MB payload costs nothing.
MAX_PAYLOAD_BYTES: Final = 4096
#: Deepest JSON we parse, checked before json.loads so a nesting bomb cannot recurse.
MAX_JSON_DEPTH: Final = 32
#: Longest device id: fits a HAP name, a Mosquitto username, and a filename.
MAX_DEVICE_ID_LENGTH: Final = 64
#: Highest service index on one device (`.../TemperatureSensor/<n>/...`).
MAX_SERVICE_INDEX: Final = 16
#: HAP allows 150 accessories per bridge, the bridge itself being one of them.
MAX_BRIDGED_ACCESSORIES: Final = 149
#: HAP bridges one process may open (`homekit.bridges`): 1,000 devices fit on 7 (1,043
#: places), and anyone who may publish can invent devices, so no more ports, mDNS records
#: and pairings than that open unless the owner raises it.
DEFAULT_HAP_BRIDGES: Final = 7
#: Highest `homekit.bridges`: ports and pairings beyond this are a typo, not a home.
MAX_HAP_BRIDGES: Final = 64

#: Apple's ADK pace: at most about one event per characteristic per second in a storm.
DEFAULT_EVENT_WINDOW: Final = 1.0
#: Quiet time before an accessory-database change bumps the configuration number once.
DEFAULT_CONFIG_DEBOUNCE: Final = 1.0
#: Longest gap before last values reach disk (an fsync per message would not keep up).
DEFAULT_STATE_FLUSH_INTERVAL: Final = 1.0
#: Reconnect backoff for the broker: start, and a cap short enough that a broker back
#: from a restart is found within half a minute.
DEFAULT_RECONNECT_MIN: Final = 0.5
DEFAULT_RECONNECT_MAX: Final = 30.0

#: Setup codes HomeKit refuses (HAP spec 5.6.2) and that a brute-force guesser tries first.
TRIVIAL_SETUP_CODES: Final = frozenset(
    {
        "000-00-000",
        "111-11-111",
        "222-22-222",
        "333-33-333",
        "444-44-444",
        "555-55-555",
        "666-66-666",
        "777-77-777",
        "888-88-888",
        "999-99-999",
        "123-45-678",
        "876-54-321",
    }
)

#: Characteristics whose every transition an automation waits for: never merged (docs/topics.md).
TRANSITION_CHARACTERISTICS: Final = frozenset(
    {
        "MotionDetected",
        "ContactSensorState",
        "OccupancyDetected",
        "LeakDetected",
        "SmokeDetected",
        "CarbonMonoxideDetected",
        "CarbonDioxideDetected",
    }
)
#: Button presses are events, not states: always sent at once.
IMMEDIATE_CHARACTERISTICS: Final = frozenset({"ProgrammableSwitchEvent"})
