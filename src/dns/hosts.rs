//! /etc/hosts parsing and exact, case-insensitive name lookup.
//!
//! Each line is `ADDRESS NAME [ALIAS...]`; a name matches only as a whole word on a line
//! (async-dns matched substrings, so `host` found `localhost`). Every address listed for a
//! name is kept, in file order; the family policy is applied by the caller. Text in, value out.
//!
//! `localhost` and names under it that the file does not list are the loopback addresses
//! (RFC 6761, section 6.3: they never go to DNS), as glibc with nss-myhostname, curl and Go's
//! resolver answer them: a minimal container or chroot without an /etc/hosts still reaches
//! `localhost:PORT` services.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an unlisted `localhost` name is: IPv4 first, as the usual hosts file lists it.
static LOOPBACK: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// The parsed hosts file: lower-cased name → addresses in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostsFile {
    names: HashMap<String, Vec<IpAddr>>,
}

impl HostsFile {
    /// Parses hosts-file text. Lines whose address does not parse (for example a scoped
    /// `fe80::1%eth0`) are skipped.
    pub(crate) fn parse(text: &str) -> HostsFile {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for raw in text.lines() {
            let line = raw.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(Ok(addr)) = words.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            for name in words {
                let key = normalize(name);
                if key.is_empty() {
                    continue;
                }
                let addrs = names.entry(key).or_default();
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
        }
        HostsFile { names }
    }

    /// The addresses listed for `name` (exact match, case-insensitive, a trailing dot ignored);
    /// for an unlisted `localhost` or `*.localhost`, the loopback addresses.
    pub(crate) fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        let key = normalize(name);
        match self.names.get(&key) {
            Some(addrs) => Some(addrs.as_slice()),
            None if key == "localhost" || key.ends_with(".localhost") => Some(&LOOPBACK),
            None => None,
        }
    }

    /// Number of distinct names in the file.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
127.0.0.1\tlocalhost
::1     localhost ip6-localhost ip6-loopback
# 10.0.0.9 commented.example
10.1.2.3  Web.Example  web   # the web box
10.1.2.4  web.example
fe80::1%eth0 scoped.example
not-an-ip broken.example
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_names_match_and_substrings_do_not() {
        let hosts = HostsFile::parse(SAMPLE);
        assert_eq!(
            hosts.lookup("localhost"),
            Some(&[ip("127.0.0.1"), ip("::1")][..])
        );
        assert_eq!(
            hosts.lookup("host"),
            None,
            "`host` must not match `localhost`"
        );
        assert_eq!(hosts.lookup("local"), None);
        assert_eq!(hosts.lookup("localhost.localdomain"), None);
        assert_eq!(hosts.lookup("notlocalhost"), None);
        assert_eq!(hosts.lookup("ip6-loopback"), Some(&[ip("::1")][..]));
    }

    #[test]
    fn matching_is_case_insensitive_and_ignores_a_trailing_dot() {
        let hosts = HostsFile::parse(SAMPLE);
        let want = Some(&[ip("10.1.2.3"), ip("10.1.2.4")][..]);
        assert_eq!(hosts.lookup("web.example"), want);
        assert_eq!(hosts.lookup("WEB.EXAMPLE."), want);
        assert_eq!(hosts.lookup("web"), Some(&[ip("10.1.2.3")][..]));
    }

    #[test]
    fn comments_and_unparsable_lines_are_skipped() {
        let hosts = HostsFile::parse(SAMPLE);
        assert_eq!(hosts.lookup("commented.example"), None);
        assert_eq!(hosts.lookup("scoped.example"), None);
        assert_eq!(hosts.lookup("broken.example"), None);
        assert_eq!(
            hosts.lookup("the"),
            None,
            "words of a comment are not names"
        );
        assert_eq!(hosts.len(), 5);
    }

    #[test]
    fn localhost_is_loopback_even_when_the_file_does_not_list_it() {
        let empty = HostsFile::parse("");
        let loopback: &[IpAddr] = &["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(empty.lookup("localhost"), Some(loopback));
        assert_eq!(empty.lookup("LocalHost."), Some(loopback));
        assert_eq!(empty.lookup("db.localhost"), Some(loopback));
        assert_eq!(empty.lookup("localhost.example"), None);
        assert_eq!(empty.lookup("mylocalhost"), None);
        // A file that lists it wins (one family only, here).
        let v4 = HostsFile::parse("127.0.0.1 localhost\n");
        assert_eq!(
            v4.lookup("localhost"),
            Some(&["127.0.0.1".parse::<IpAddr>().unwrap()][..])
        );
    }
}
