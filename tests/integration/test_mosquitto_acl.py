"""The shipped Mosquitto config (deploy/mosquitto) in a real Mosquitto: every client logs in,
a device writes only its own subtree, and no login escapes it (issue 14, item 2).

Logins come from both tools a user has: `mqtt-hk-bridge mqtt-user add` and Mosquitto's own
`mosquitto_passwd`. "Refused" is shown, not assumed: after each attempt the observer (the
bridge's login, subscribed to everything) publishes a marker through the same broker; once
the marker is back, anything the broker let through would have arrived before it.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from mqtt_hk_bridge.cli import main
from mqtt_hk_bridge.controller.pairings import PairingStore
from mqtt_hk_bridge.mqtt_users import password_entry
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.shipped_mosquitto import (
    copy_shipped_dir,
    mosquitto_passwd,
    start_shipped_broker,
)
from tests.support.wait import wait_for

BRIDGE_LOGIN = "mqtt-hk-bridge"
#: A HomeKit accessory the bridge paired (controller side) and one behind it (aid 2).
ALIAS = "hue"
_markers = itertools.count()


class Logins:
    """Passwords of the logins made for one broker."""

    def __init__(self, config_dir: Path) -> None:
        self.dir = config_dir
        self.password_file = config_dir / "passwd"
        self.bridge_config = config_dir / "bridge.yaml"
        self.bridge_config.write_text("data_dir: ./data\n")
        # A controller-side pairing, as `mqtt-hk-bridge pair --alias hue` would store it.
        PairingStore(config_dir / "data" / "controller-pairings.json").put(
            ALIAS,
            {
                "AccessoryPairingID": "AA:BB:CC:DD:EE:FF",
                "AccessoryLTPK": "00",
                "iOSPairingId": "11",
                "iOSDeviceLTSK": "22",
            },
        )
        self.passwords: dict[str, str] = {}

    def add_with_bridge_tool(
        self, capsys: pytest.CaptureFixture[str], *args: str
    ) -> tuple[int, str]:
        """`mqtt-hk-bridge mqtt-user add ...`: (exit code, the password or the error)."""
        code = main(
            [
                "-c",
                str(self.bridge_config),
                "mqtt-user",
                "add",
                *args,
                "--password-file",
                str(self.password_file),
            ]
        )
        out, err = capsys.readouterr()
        if code == 0:
            name = BRIDGE_LOGIN if args == ("--bridge",) else args[0]
            self.passwords[name] = out.strip()
            return code, out.strip()
        return code, err

    def add_with_mosquitto_passwd(self, name: str) -> None:
        self.passwords[name] = f"pw-{len(self.passwords)}"
        mosquitto_passwd(self.password_file, name, self.passwords[name])

    def client(self, broker: Mosquitto, name: str) -> MqttProbe:
        return broker.probe(username=name, password=self.passwords[name])


@pytest.fixture
def logins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Logins:
    made = Logins(copy_shipped_dir(tmp_path / "mosquitto-config"))
    assert made.add_with_bridge_tool(capsys, "--bridge")[0] == 0
    assert made.add_with_bridge_tool(capsys, "esp1")[0] == 0
    made.add_with_mosquitto_passwd("esp2")
    return made


@pytest.fixture
def broker(make_mosquitto: Callable[..., Mosquitto], logins: Logins) -> Mosquitto:
    return start_shipped_broker(make_mosquitto, logins.dir)


async def _marker(observer: MqttProbe) -> None:
    """Returns once a fresh marker went through the broker back to the observer."""
    topic = f"HomeKit/{BRIDGE_LOGIN}/marker/{next(_markers)}"
    await observer.publish(topic, "x")
    await observer.wait_message(topic)


async def test_anonymous_and_wrong_password_are_refused(broker: Mosquitto, logins: Logins) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with broker.probe():
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with broker.probe(username="esp1", password="not-the-password"):
            pass
    async with logins.client(broker, "esp1"):
        pass  # the right password gets in


@pytest.mark.parametrize("device", ["esp1", "esp2"], ids=["mqtt-user-add", "mosquitto_passwd"])
async def test_a_device_writes_its_own_subtree_and_reads_its_commands(
    broker: Mosquitto, logins: Logins, device: str
) -> None:
    async with (
        logins.client(broker, BRIDGE_LOGIN) as bridge,
        logins.client(broker, device) as esp,
    ):
        await bridge.subscribe("HomeKit/#")
        await esp.subscribe(f"HomeKit/{device}/#")
        await esp.publish(f"HomeKit/{device}/TemperatureSensor/CurrentTemperature", "20")
        await esp.publish(f"HomeKit/{device}/availability", "online", retain=True)
        await bridge.wait_message(f"HomeKit/{device}/TemperatureSensor/CurrentTemperature")
        await bridge.wait_message(f"HomeKit/{device}/availability")
        await bridge.publish(f"HomeKit/{device}/Switch/On/set", "1")
        command = await esp.wait_message(f"HomeKit/{device}/Switch/On/set")
        assert command.payload == b"1"


#: Where a device must never write: another device (and one whose id starts with ours),
#: the controller side's accessories, the bridge's own subtree, the base level, elsewhere.
def _escapes(device: str) -> list[str]:
    other = "esp2" if device == "esp1" else "esp1"
    return [
        f"HomeKit/{other}/Switch/On",
        f"HomeKit/{other}/Switch/On/set",
        f"HomeKit/{device}0/Switch/On",
        f"HomeKit/{ALIAS}/Lightbulb/On/set",
        f"HomeKit/{ALIAS}-2/Lightbulb/On/set",
        "HomeKit/bridge/request/pair",
        "HomeKit/bridge/state",
        "HomeKit",
    ]


@pytest.mark.parametrize("device", ["esp1", "esp2"], ids=["mqtt-user-add", "mosquitto_passwd"])
async def test_a_device_cannot_publish_outside_its_subtree(
    broker: Mosquitto, logins: Logins, device: str
) -> None:
    async with (
        logins.client(broker, BRIDGE_LOGIN) as bridge,
        logins.client(broker, device) as esp,
    ):
        await bridge.subscribe("HomeKit/#")
        for topic in _escapes(device):
            await esp.publish(topic, "from-" + device)  # QoS 1: returns after the PUBACK
        await esp.publish(f"HomeKit/{device}/Switch/On", "own")
        await bridge.wait_message(f"HomeKit/{device}/Switch/On")
        await _marker(bridge)
        leaked = [m.topic for m in bridge.messages if m.payload == f"from-{device}".encode()]
        assert leaked == []


async def test_a_device_reads_nothing_of_other_subtrees(broker: Mosquitto, logins: Logins) -> None:
    async with (
        logins.client(broker, BRIDGE_LOGIN) as bridge,
        logins.client(broker, "esp1") as esp,
    ):
        await esp.subscribe("HomeKit/esp1/#")
        await esp.subscribe("HomeKit/#")  # asks for everything; must get only its own
        await esp.subscribe("#")
        for topic in ("HomeKit/esp2/Switch/On/set", "HomeKit/bridge/state", f"HomeKit/{ALIAS}/x/y"):
            await bridge.publish(topic, "secret")
        await bridge.publish("HomeKit/esp1/Switch/On/set", "mine")
        await esp.wait_message("HomeKit/esp1/Switch/On/set")
        assert [m.topic for m in esp.messages] == ["HomeKit/esp1/Switch/On/set"] * len(esp.messages)


@pytest.mark.parametrize("name", ["bridge", "+", "#"])
async def test_mosquitto_passwd_logins_the_acl_still_confines(
    make_mosquitto: Callable[..., Mosquitto], logins: Logins, name: str
) -> None:
    """mosquitto_passwd accepts these names; the shipped ACL (a deny for `bridge`) and
    Mosquitto itself (wildcards in a login; a `#` line is a comment in the password file,
    so that login cannot even connect) keep them out of every subtree."""
    logins.add_with_mosquitto_passwd(name)
    broker = start_shipped_broker(make_mosquitto, logins.dir)
    async with logins.client(broker, BRIDGE_LOGIN) as bridge:
        await bridge.subscribe("HomeKit/#")
        try:
            async with logins.client(broker, name) as client:
                for topic in ("HomeKit/bridge/request/pair", "HomeKit/esp1/Switch/On/set"):
                    await client.publish(topic, "escaped")
        except aiomqtt.MqttCodeError:
            assert name == "#"
        await _marker(bridge)
        assert [m.topic for m in bridge.messages if m.payload == b"escaped"] == []


async def test_mosquitto_alone_lets_a_login_with_a_slash_into_another_device(
    make_mosquitto: Callable[..., Mosquitto], logins: Logins, capsys: pytest.CaptureFixture[str]
) -> None:
    """Why `mqtt-user add` refuses '/': Mosquitto denies wildcards in a login but not a
    slash, so `esp1/Switch` gets HomeKit/esp1/Switch/# from the ACL pattern."""
    code, error = logins.add_with_bridge_tool(capsys, "esp1/Switch")
    assert code == 2 and "contains '/'" in error and "'esp1'" in error
    logins.add_with_mosquitto_passwd("esp1/Switch")
    broker = start_shipped_broker(make_mosquitto, logins.dir)
    async with logins.client(broker, BRIDGE_LOGIN) as bridge:
        await bridge.subscribe("HomeKit/#")
        async with logins.client(broker, "esp1/Switch") as intruder:
            await intruder.publish("HomeKit/esp1/Switch/On", "intruder")
        await bridge.wait_message("HomeKit/esp1/Switch/On", lambda m: m.payload == b"intruder")


async def test_a_login_added_while_the_broker_runs_works_after_sighup(
    broker: Mosquitto, logins: Logins, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `mqtt-user add` tells the user to do: SIGHUP rereads the password file."""
    assert logins.add_with_bridge_tool(capsys, "esp3")[0] == 0
    broker.sighup()

    async def accepted() -> bool:
        try:
            async with logins.client(broker, "esp3"):
                return True
        except aiomqtt.MqttError:
            return False

    # Mosquitto rereads the file in its own loop, shortly after the signal.
    assert await wait_for(accepted, timeout=5, message="esp3 accepted after SIGHUP")


def test_mqtt_user_add_refuses_names_that_leave_their_subtree(
    logins: Logins, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = {
        "": "empty",
        "esp1/Switch": "contains '/'",
        "+": "wildcard",
        "esp#": "wildcard",
        "bridge": "the bridge's own subtree",
        BRIDGE_LOGIN: "the bridge's own login",
        ALIAS: "paired",
        f"{ALIAS}-2": f"paired as {ALIAS!r}",
        "a:b": "':'",
        "esp\n1": "control character",
    }
    before = logins.password_file.read_text()
    for name, reason in refused.items():
        code, error = logins.add_with_bridge_tool(capsys, name)
        assert code == 2, name
        assert reason in error, (name, error)
    assert logins.password_file.read_text() == before  # nothing written for any of them


def test_entries_are_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    """Same name, password, salt and iterations give the very line mosquitto_passwd wrote."""
    path = tmp_path / "passwd"
    mosquitto_passwd(path, "esp1", "s3cret:with$odd chars")
    written = path.read_text().strip()
    _, tag, iterations, salt, _ = written.split(":", 1)[1].split("$")
    assert tag == "7"
    ours = password_entry(
        "esp1", "s3cret:with$odd chars", salt=base64.b64decode(salt), iterations=int(iterations)
    )
    assert ours == written
