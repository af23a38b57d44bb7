"""The parts of a simulated HAP-over-CoAP (Thread) accessory; `tests.peers.coap_accessory`
puts them together. Written from the HAP specification (pairing, HAP-BLE PDUs), not from
aiohomekit, so that tests check aiohomekit's CoAP client against the protocol."""
