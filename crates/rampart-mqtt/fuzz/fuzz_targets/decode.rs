//! Fuzz the MQTT decoder: any bytes, before CONNECT and after it in both protocols, with a small
//! and a large maximum packet size. Decoding must never panic, must consume exactly what it
//! returns, and every packet it returns must encode again.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rampart_mqtt::{Packet, Protocol, decode, encode};

fuzz_target!(|data: &[u8]| {
    for protocol in [None, Some(Protocol::V311), Some(Protocol::V5)] {
        for max_packet_size in [64, 256 * 1024] {
            let mut buf = BytesMut::from(data);
            let mut protocol = protocol;
            while let Ok(Some(packet)) = decode(&mut buf, protocol, max_packet_size) {
                let negotiated = match (&packet, protocol) {
                    (Packet::Connect(connect), None) => connect.protocol,
                    (_, Some(negotiated)) => negotiated,
                    (_, None) => panic!("only CONNECT may be decoded before CONNECT"),
                };
                protocol = Some(negotiated);
                let mut out = BytesMut::new();
                if encode(&packet, negotiated, &mut out).is_err() {
                    panic!("a decoded packet must encode again: {packet:?}");
                }
            }
        }
    }
});
