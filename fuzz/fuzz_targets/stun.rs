//! STUN (RFC 5389/8489) as the bridge parses it: every accessor, attribute walk,
//! MESSAGE-INTEGRITY and FINGERPRINT checks on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbridge_bridge::proto::stun::{self, IntegrityKey, Message};

fuzz_target!(|data: &[u8]| {
    let _ = stun::is_stun(data);
    let _ = stun::verify_fingerprint(data);
    let _ = stun::verify_integrity(data, b"VOkJxbRl1RmTxUk/WvJxBt");
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let _ = msg.message_type().to_u16();
    let _ = msg.transaction_id();
    let _ = msg.is_binding_request();
    for a in msg.attributes() {
        let _ = a;
    }
    let _ = msg.username();
    let _ = msg.priority();
    let _ = msg.use_candidate();
    let _ = msg.ice_controlling();
    let _ = msg.ice_controlled();
    let _ = msg.ice_role();
    let _ = msg.xor_mapped_address();
    let _ = msg.error_code();
    let _ = msg.message_integrity();
    let _ = msg.fingerprint();
    let _ = msg.verify_integrity(&IntegrityKey::new(b"VOkJxbRl1RmTxUk/WvJxBt"));
    let _ = msg.verify_fingerprint();
    assert_eq!(msg.as_bytes().len() % 4, 0);
});
