"""HomeKit accessories -> MQTT (aiohomekit)."""
