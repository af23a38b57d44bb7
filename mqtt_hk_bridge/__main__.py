"""`python -m mqtt_hk_bridge` is `mqtt-hk-bridge`."""

from .cli import main

raise SystemExit(main())
