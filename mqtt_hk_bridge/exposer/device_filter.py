"""`device_filter`: which MQTT device ids this process shows, so that two bridge processes
can split one broker's devices. Patterns are globs on the device id (`kitchen_*`,
`esp8266_????????`, `[ab]*`), for every source alike (our topic layout, mapped and
discovered devices).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence

from ..config import DeviceFilter


def _pattern(globs: Sequence[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(fnmatch.translate(glob) for glob in globs))


def _every(_device_id: str) -> bool:
    return True


def device_filter(config: DeviceFilter) -> Callable[[str], bool]:
    """`takes(device_id)`: True for an id matching an include pattern (any id when there
    is none) and no exclude pattern. One regular-expression match per call at most."""
    include = _pattern(config.include)
    exclude = _pattern(config.exclude)
    if include is None and exclude is None:
        return _every

    def takes(device_id: str) -> bool:
        if include is not None and include.match(device_id) is None:
            return False
        return exclude is None or exclude.match(device_id) is None

    return takes
