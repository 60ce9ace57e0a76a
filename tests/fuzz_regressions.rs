//! Replays the fuzz seeds and every checked-in fuzz reproducer (`fuzz/seeds/TARGET/*`,
//! `fuzz/artifacts/TARGET/crash-*`) through the same entry points as the fuzz targets, so
//! a fixed crash stays fixed in the ordinary test run (no fuzzer needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tcpmap::internals::{decode_control_frames, parse_service};
use tcpmap::sni::{Peek, parse_client_hello};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in [
        root.join("seeds").join(target),
        root.join("artifacts").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            out.push(e.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn client_hello_inputs() {
    let files = inputs("client_hello");
    assert!(files.len() >= 3, "seeds missing: {files:?}");
    let mut sni = 0;
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let whole = parse_client_hello(&data);
        if let Peek::Sni(name) = &whole {
            assert!(!name.is_empty());
            sni += 1;
        }
        let first = parse_client_hello(&data[..data.len() / 2]);
        if first != Peek::NeedMore {
            assert_eq!(first, whole, "{}", f.display());
        }
    }
    assert!(sni >= 2, "the real ClientHello seeds should carry SNI");
}

#[test]
fn config_load_inputs() {
    let files = inputs("config_load");
    assert!(files.len() >= 5, "seeds missing: {files:?}");
    for f in files {
        let Ok(text) = String::from_utf8(std::fs::read(&f).unwrap()) else {
            continue;
        };
        let input = tcpmap::ConfigInput {
            inline: vec![("fuzz.yaml".into(), text)],
            ..Default::default()
        };
        match tcpmap::config::load(&input) {
            Ok(l) => drop(l.render_text()),
            Err(problems) => assert!(!problems.is_empty()),
        }
    }
}

#[test]
fn service_inputs() {
    let files = inputs("service");
    assert!(files.len() >= 5, "seeds missing: {files:?}");
    for f in files {
        let Ok(text) = String::from_utf8(std::fs::read(&f).unwrap()) else {
            continue;
        };
        if let Ok(p) = parse_service(&text) {
            assert_ne!(p.port, Some(0), "{}", f.display());
        }
    }
}

#[test]
fn control_frame_inputs() {
    let files = inputs("control_frame");
    assert!(files.len() >= 5, "seeds missing: {files:?}");
    let mut decoded = 0;
    for f in files {
        decoded += decode_control_frames(&std::fs::read(&f).unwrap());
    }
    // The well-formed seeds decode (each frame once, as a request or as a reply).
    assert!(decoded >= 7, "{decoded}");
}
