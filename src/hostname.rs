//! The one host-name rule, shared by everything that checks a name: a TCPMapping's service
//! host (config), a ClientHello's SNI (sni) and a name about to be sent to a DNS server (dns).
//!
//! A host name is 1 to 253 bytes of dot-separated labels; a label is 1 to 63 ASCII letters,
//! digits, `-` or `_`, and does not begin or end with `-` (RFC 952/1123 host names, with `_`
//! allowed because Kubernetes and SRV-style names use it). No trailing dot: callers whose
//! input may be written fully qualified (`svc.example.`) strip one dot first. Pure.

/// The longest host name in bytes (255 on the wire, minus the length octet and the root).
pub(crate) const MAX_LEN: usize = 253;

/// Whether `name` (without a trailing dot) is a valid host name.
pub(crate) fn is_valid(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_LEN && name.split(|&b| b == b'.').all(is_label)
}

fn is_label(label: &[u8]) -> bool {
    let inner = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    !label.is_empty()
        && label.len() <= 63
        && label.iter().all(inner)
        && label.first() != Some(&b'-')
        && label.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "a",
            "my-host-1",
            "upstream.default.svc.cluster.local",
            "_sip._tcp.example",
            "x1.y2",
        ] {
            assert!(is_valid(name.as_bytes()), "{name}");
        }
        let longest_label = "a".repeat(63);
        assert!(is_valid(longest_label.as_bytes()));
        let longest = [longest_label.as_str(); 4].join(".");
        assert_eq!(longest.len(), 255);
        assert!(!is_valid(longest.as_bytes()));
        assert!(is_valid(&longest.as_bytes()[..MAX_LEN]));
    }

    #[test]
    fn rejects_what_is_not_a_host_name() {
        let long_label = "a".repeat(64);
        for name in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "-a",
            "a-",
            "a.-b",
            "a b",
            "a/b",
            "a*b",
            "*.example",
            "héllo",
            "a\0b",
            "a:80",
            long_label.as_str(),
        ] {
            assert!(!is_valid(name.as_bytes()), "{name:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_valid_names_are_short_ascii(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if is_valid(&bytes) {
                prop_assert!(bytes.len() <= MAX_LEN && bytes.is_ascii());
            }
        }
    }
}
