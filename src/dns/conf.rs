//! resolv.conf parsing: nameservers, search list, `options` (every option on every line).
//!
//! Follows resolv.conf(5) as glibc reads it, plus one documented extension: a nameserver may
//! carry a port (`nameserver 127.0.0.1:5353`, `nameserver [::1]:5353`), so tests and local
//! setups can point tcpmap at a DNS server that cannot bind port 53. Text in, value out: the
//! file is read by the resolver actor.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The standard DNS port.
pub(crate) const DNS_PORT: u16 = 53;
/// glibc reads at most this many nameservers.
pub(crate) const MAX_NAMESERVERS: usize = 3;
/// Upper bounds glibc applies to `options`.
const MAX_NDOTS: u8 = 15;
const MAX_TIMEOUT_SECS: u64 = 30;
const MAX_ATTEMPTS: u8 = 5;

/// What a resolv.conf says, with glibc's defaults for what it does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvConf {
    /// Nameservers in file order (at most three); `127.0.0.1:53` when the file names none.
    pub(crate) nameservers: Vec<SocketAddr>,
    /// Search domains without trailing dots (from the last `search` or `domain` line).
    pub(crate) search: Vec<String>,
    /// `options ndots:N` (default 1, max 15).
    pub(crate) ndots: u8,
    /// `options timeout:N`: seconds to wait for one try (default 5, max 30).
    pub(crate) timeout: Duration,
    /// `options attempts:N`: tries per nameserver (default 2, min 1, max 5).
    pub(crate) attempts: u8,
    /// Lines or entries that were ignored, for a log line (`line N: why`).
    pub(crate) problems: Vec<String>,
}

impl Default for ResolvConf {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            problems: Vec::new(),
        }
    }
}

impl ResolvConf {
    /// Parses the text of a resolv.conf. Never fails: unknown or malformed entries are skipped
    /// and listed in `problems`, as the C library would silently skip them.
    pub(crate) fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword {
                "nameserver" => match words.next().and_then(parse_nameserver) {
                    Some(addr) if conf.nameservers.len() < MAX_NAMESERVERS => conf.nameservers.push(addr),
                    Some(addr) => conf
                        .problems
                        .push(format!("line {line_no}: nameserver {addr} ignored (only {MAX_NAMESERVERS} are used)")),
                    None => conf.problems.push(format!("line {line_no}: bad nameserver line `{}`", raw.trim())),
                },
                // The last `search` or `domain` line wins, as in glibc.
                "search" | "domain" => {
                    conf.search = words
                        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                        .filter(|d| !d.is_empty())
                        .collect();
                }
                "options" => {
                    for option in words {
                        conf.apply_option(option, line_no);
                    }
                }
                "sortlist" | "lookup" | "family" => {}
                other => conf.problems.push(format!("line {line_no}: unknown keyword `{other}` ignored")),
            }
        }
        if conf.nameservers.is_empty() {
            conf.nameservers
                .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT));
        }
        conf
    }

    fn apply_option(&mut self, option: &str, line_no: usize) {
        let (name, value) = option.split_once(':').unwrap_or((option, ""));
        let number = value.parse::<u64>().ok();
        match (name, number) {
            ("ndots", Some(n)) => self.ndots = n.min(u64::from(MAX_NDOTS)) as u8,
            ("timeout", Some(n)) => {
                self.timeout = Duration::from_secs(n.clamp(1, MAX_TIMEOUT_SECS))
            }
            ("attempts", Some(n)) => self.attempts = n.clamp(1, u64::from(MAX_ATTEMPTS)) as u8,
            ("ndots" | "timeout" | "attempts", None) => {
                self.problems
                    .push(format!("line {line_no}: bad option `{option}` ignored"));
            }
            // rotate, edns0, single-request, use-vc, …: accepted and not needed here.
            _ => {}
        }
    }
}

/// `1.2.3.4`, `::1`, or the extension forms `1.2.3.4:5353` and `[::1]:5353`.
fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    word.parse::<SocketAddr>()
        .ok()
        .filter(|addr| addr.port() != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_when_the_file_is_empty() {
        let conf = ResolvConf::parse("");
        assert_eq!(conf.nameservers, vec![sa("127.0.0.1:53")]);
        assert!(conf.search.is_empty());
        assert_eq!(
            (conf.ndots, conf.timeout, conf.attempts),
            (1, Duration::from_secs(5), 2)
        );
    }

    #[test]
    fn nameservers_with_ipv6_and_the_port_extension() {
        let conf = ResolvConf::parse(
            "# comment\nnameserver 10.0.0.1\nnameserver ::1   # trailing comment\nnameserver [::1]:5353\nnameserver 127.0.0.1:5353\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![sa("10.0.0.1:53"), sa("[::1]:53"), sa("[::1]:5353")]
        );
        assert_eq!(
            conf.problems.len(),
            1,
            "the fourth nameserver is reported: {:?}",
            conf.problems
        );
    }

    #[test]
    fn bad_nameserver_lines_are_reported_not_fatal() {
        let conf = ResolvConf::parse(
            "nameserver not-an-ip\nnameserver 127.0.0.1:0\nnameserver 127.0.0.2\n",
        );
        assert_eq!(conf.nameservers, vec![sa("127.0.0.2:53")]);
        assert_eq!(conf.problems.len(), 2);
    }

    #[test]
    fn every_option_on_one_line_is_read() {
        let conf = ResolvConf::parse("options rotate ndots:5 timeout:1 attempts:3 edns0\n");
        assert_eq!(
            (conf.ndots, conf.timeout, conf.attempts),
            (5, Duration::from_secs(1), 3)
        );
    }

    #[test]
    fn options_are_clamped_and_later_lines_override() {
        let conf = ResolvConf::parse("options ndots:99 timeout:0 attempts:50\noptions ndots:2\n");
        assert_eq!(
            (conf.ndots, conf.timeout, conf.attempts),
            (2, Duration::from_secs(1), 5)
        );
        let bad = ResolvConf::parse("options ndots:x\n");
        assert_eq!(bad.ndots, 1);
        assert_eq!(bad.problems.len(), 1);
    }

    #[test]
    fn the_last_search_or_domain_line_wins() {
        let conf =
            ResolvConf::parse("domain corp.example\nsearch Svc.Cluster.Local. cluster.local\n");
        assert_eq!(
            conf.search,
            vec!["svc.cluster.local".to_string(), "cluster.local".to_string()]
        );
        let conf = ResolvConf::parse("search a.example b.example\ndomain c.example\n");
        assert_eq!(conf.search, vec!["c.example".to_string()]);
    }

    #[test]
    fn keywords_must_be_whole_words() {
        // async-dns matched prefixes, so `nameservers` or `searchx` counted; they do not here.
        let conf = ResolvConf::parse("searchx nope.example\nnameservers 10.9.9.9\n");
        assert!(conf.search.is_empty());
        assert_eq!(conf.nameservers, vec![sa("127.0.0.1:53")]);
    }
}
