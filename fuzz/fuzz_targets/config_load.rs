//! Fuzzes the whole config pipeline (YAML → raw resources → validated route table) on an
//! inline document: any text must give either a table or a list of errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpmap::ConfigInput;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = ConfigInput {
        paths: Vec::new(),
        inline: vec![("fuzz.yaml".to_string(), text.to_string())],
        // No secrets dir: TLS references fail validation without touching the disk.
        secrets_dir: None,
        ..ConfigInput::default()
    };
    match tcpmap::config::load(&input) {
        Ok(loaded) => {
            let _ = loaded.render_text();
        }
        Err(problems) => {
            for p in problems {
                let _ = p.to_string();
            }
        }
    }
});
