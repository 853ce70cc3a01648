//! Interop tests (issue 3, item 10): clients nobody here wrote — paho-mqtt from PyPI on MQTT
//! 3.1.1 and 5.0, and Debian's mosquitto_pub/mosquitto_sub — against the real `rampart`
//! binary's MQTT gateway over TLS, with device tokens and with client certificates; and
//! `rampart bench` against Rampart and against a Mosquitto of our own (`bench/mosquitto.sh`).
//! A test whose outside tool is missing prints why and passes; CI installs the tools.

mod bench_cli;
mod conformance;
mod device_mgmt;
mod mosquitto_clients;
mod paho;
mod support;

pub const BIN: &str = env!("CARGO_BIN_EXE_rampart");
