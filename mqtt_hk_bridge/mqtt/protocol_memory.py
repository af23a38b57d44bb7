"""The MQTT protocol a broker needs, kept across restarts for `mqtt.protocol: auto`.

A broker without MQTT 5 may never answer an MQTT 5 CONNECT (RabbitMQ before 3.13), so
finding out costs a whole wait for the CONNACK; once the broker has connected with 3.1.1,
the next start tries 3.1.1 first. One small file in data_dir names the broker (`host:port`)
and the protocol; it exists only while that broker last connected with 3.1.1, and a connect
with MQTT 5 removes it. It is a hint, not state: a file that cannot be read, or that names
another broker, is ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from ..store import backup_path, write_atomic

_LOGGER = logging.getLogger(__name__)

#: Under data_dir.
MQTT_PROTOCOL_FILE = "mqtt-protocol.json"
#: The one protocol worth remembering: MQTT 5 is what `auto` tries first anyway.
REMEMBERED_PROTOCOL = "3.1.1"


class ProtocolMemory:
    def __init__(self, path: Path, broker: str) -> None:
        self.path = path
        self._broker = broker
        #: What the file says for this broker, as far as we know (None: no record).
        self._recorded: str | None = None

    def load(self) -> str | None:
        """The protocol this broker last connected with, when it was 3.1.1."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            _LOGGER.warning("Ignoring %s: %s", self.path, err)
            return None
        if (
            isinstance(record, dict)
            and record.get("broker") == self._broker
            and record.get("protocol") == REMEMBERED_PROTOCOL
        ):
            self._recorded = REMEMBERED_PROTOCOL
        return self._recorded

    def remember(self, protocol: str) -> None:
        """`protocol` just connected to the broker: keep 3.1.1, forget anything else."""
        wanted = protocol if protocol == REMEMBERED_PROTOCOL else None
        if wanted == self._recorded and (wanted is not None or not self.path.exists()):
            return
        try:
            if wanted is None:
                for path in (self.path, backup_path(self.path)):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            else:
                record = {"broker": self._broker, "protocol": wanted}
                write_atomic(self.path, json.dumps(record) + "\n")
        except OSError as err:
            # The next start then finds the protocol again, with one more wait.
            _LOGGER.warning("Could not update %s: %s", self.path, err)
        self._recorded = wanted
