//! The MQTT wire codec (being written).
