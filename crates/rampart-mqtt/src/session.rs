//! The per-connection session state machine (being written).
