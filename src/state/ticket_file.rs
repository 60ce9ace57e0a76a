//! `--session-ticket-keys FILE`: session-ticket keys shared by every tcpmap process given the
//! same file (docs/operations.md, "Running a fleet").
//!
//! The file holds one key per line, the standard base64 of 80 random bytes (`openssl rand 80
//! | base64 -w0`); blank lines and lines starting with `#` are skipped. The first key seals
//! new tickets, every key opens tickets it sealed. The 80 bytes follow the layout nginx and
//! Envoy use (a 16-byte name, a 32-byte AES key, a 32-byte HMAC key): tcpmap names its
//! tickets by the first 8 bytes of the name and seals them with AES-256-GCM under the AES
//! key; the HMAC key is not used (GCM authenticates by itself). Tickets are tcpmap's own
//! format, so the same file does not make nginx and tcpmap resume each other's sessions.
//!
//! Errors name the file and the line, never the line's text: a key is never logged.

use std::path::Path;

use base64::Engine as _;

use super::ticket_keys::{TicketKey, TicketKeys, unix_now};

/// Bytes of one key.
pub(crate) const KEY_LEN: usize = 80;

/// The keys of a key file's text, made at `now` (Unix seconds).
pub(crate) fn parse(text: &str, now: u64) -> Result<TicketKeys, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let mut bytes = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(line)
                .map_err(|_| format!("line {n}: not base64"))?,
        );
        let len = bytes.len();
        let Ok(key) = <&[u8; KEY_LEN]>::try_from(bytes.as_slice()) else {
            zeroize::Zeroize::zeroize(&mut *bytes);
            return Err(format!(
                "line {n}: {len} bytes, a key has {KEY_LEN} (`openssl rand {KEY_LEN} | base64 -w0`)"
            ));
        };
        keys.push(TicketKey::from_file_bytes(key, now));
    }
    if keys.is_empty() {
        return Err("no key in it (one base64 line of 80 bytes per key)".to_string());
    }
    TicketKeys::from_list(keys)
        .ok_or_else(|| "two keys share their first 8 bytes (the ticket's key name)".to_string())
}

/// The keys of the file at `path`; the error names the file.
pub(crate) fn read(path: &Path) -> Result<TicketKeys, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("session-ticket keys {}: {e}", path.display()))?,
    );
    parse(&text, unix_now()).map_err(|e| format!("session-ticket keys {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::ticket_keys::{KeyRing, Mode};

    const T0: u64 = 1_800_000_000;

    fn line(fill: u8) -> String {
        let mut b = [fill; KEY_LEN];
        b[0] = fill.wrapping_add(1);
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn ring(text: &str) -> KeyRing {
        KeyRing::new(parse(text, T0).unwrap(), Mode::Given).unwrap()
    }

    #[test]
    fn the_first_line_seals_and_every_line_opens() {
        let (a, b, c) = (line(1), line(2), line(3));
        let one = ring(&format!("{a}\n"));
        let t = one.seal_at(b"x", T0).unwrap();
        // Rotated: a new first line, the old one second (and a third): the old ticket opens.
        let rotated = ring(&format!("# rotated\n{b}\n\n{a}\n{c}\n"));
        assert_eq!(rotated.open_at(&t, T0).as_deref(), Some(&b"x"[..]));
        let new = rotated.seal_at(b"y", T0).unwrap();
        assert_eq!(
            one.open_at(&new, T0),
            None,
            "sealed with the new first line"
        );
        assert_eq!(ring(&b).open_at(&new, T0).as_deref(), Some(&b"y"[..]));
        // Third and later lines open too.
        assert_eq!(
            ring(&format!("{b}\n{c}\n{a}")).open_at(&t, T0).as_deref(),
            Some(&b"x"[..])
        );
        // A file without the key: a full handshake.
        assert_eq!(ring(&format!("{b}\n{c}")).open_at(&t, T0), None);
        assert_eq!(parse(&format!("{b}\n{c}\n{a}"), T0).unwrap().len(), 3);
    }

    #[test]
    fn the_same_file_read_twice_is_the_same_keys() {
        let text = format!("{}\n{}\n", line(7), line(8));
        let a = parse(&text, T0).unwrap();
        let b = parse(&text, T0 + 100).unwrap();
        assert!(a.same_keys(&b));
        assert!(!a.same_keys(&parse(&line(7), T0).unwrap()));
        assert!(!a.same_keys(&parse(&format!("{}\n{}\n", line(8), line(7)), T0).unwrap()));
    }

    #[test]
    fn bad_files_are_refused_without_showing_a_key() {
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 48]);
        let good = line(4);
        for (text, want) in [
            ("", "no key"),
            ("# only a comment\n\n", "no key"),
            ("not base64!\n", "line 1: not base64"),
            (&format!("{good}\n{short}\n"), "line 2: 48 bytes"),
            (&format!("{good}\n{good}\n"), "share"),
        ] {
            let e = parse(text, T0).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains(&good) && !e.contains(&short), "{e}");
        }
        let e = read(Path::new("/nonexistent/tcpmap-keys")).unwrap_err();
        assert!(e.contains("/nonexistent/tcpmap-keys"), "{e}");
    }
}
