"""Which HAP connections that never proved a pairing are closed, and when."""

from __future__ import annotations

from mqtt_hk_bridge.exposer.connection_limits import UnverifiedConnections


def never(_: object) -> bool:
    return False


def test_at_the_cap_the_oldest_stranger_makes_room() -> None:
    limits = UnverifiedConnections(total=3, per_source=10)
    for n in range(3):
        assert limits.admit(("10.0.0.1", n), f"10.0.0.{n}", 0.0, never, never) == []
    assert limits.admit(("x", 9), "10.0.0.9", 1.0, never, never) == [("10.0.0.1", 0)]
    assert len(limits) == 3


def test_one_address_cannot_take_every_place() -> None:
    limits = UnverifiedConnections(total=10, per_source=2)
    limits.admit(1, "a", 0.0, never, never)
    limits.admit(2, "b", 0.0, never, never)
    limits.admit(3, "a", 0.0, never, never)
    # A third from "a" pushes out a's oldest, not b's.
    assert limits.admit(4, "a", 0.0, never, never) == [1]


def test_verified_connections_never_count_or_get_closed() -> None:
    limits = UnverifiedConnections(total=2, per_source=2)
    limits.admit("controller", "a", 0.0, never, never)
    limits.admit("stranger", "a", 0.0, never, never)

    def verified(key: object) -> bool:
        return key == "controller"

    assert limits.admit("new", "a", 1.0, verified, never) == []  # the controller left the count
    assert limits.expired(100.0, verified, never) == ["stranger", "new"]


def test_strangers_are_closed_after_the_timeout_unless_pairing() -> None:
    limits = UnverifiedConnections(timeout=30.0)
    limits.admit("idle", "a", 0.0, never, never)
    limits.admit("pairing", "a", 0.0, never, never)
    limits.admit("young", "a", 20.0, never, never)
    assert limits.expired(30.0, never, never) == []
    assert limits.expired(31.0, never, lambda key: key == "pairing") == ["idle"]
    assert limits.expired(51.0, never, never) == ["pairing", "young"]
    limits.closed("gone")  # closing an unknown connection is harmless
    assert len(limits) == 0


def test_the_connection_in_pair_setup_is_never_pushed_out() -> None:
    limits = UnverifiedConnections(total=10, per_source=2)
    limits.admit("pairing", "a", 0.0, never, never)
    limits.admit("other", "a", 0.0, never, never)

    def pairing(key: object) -> bool:
        return key == "pairing"

    assert limits.admit("new", "a", 1.0, never, pairing) == ["other"]
