//! The TOML configuration file (`ringbridge run --config`): parse, then validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbridge_bridge::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::parse(text) {
        let _ = cfg.validate();
        let _ = cfg.has_key();
        let _ = cfg.require_key();
    }
});
