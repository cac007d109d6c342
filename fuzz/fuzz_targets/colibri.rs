//! Colibri websocket text frames from an endpoint (`EndpointMessage`,
//! `SourceVideoTypeMessage`, ...), through the same handling as a live socket.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbridge_control::colibri::handle_frame_for_fuzzing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (_, queued) = handle_frame_for_fuzzing(text);
    assert!(
        queued <= 1,
        "one frame is relayed to the other endpoint at most once"
    );
});
