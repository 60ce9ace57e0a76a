//! `service: [https://]host[:port]` parsing, default ports and namespace qualification.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::route::ServiceHost;

/// A parsed `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedService {
    /// `https://` was given: originate TLS.
    pub https: bool,
    /// `http://` was given: cleartext, as without a scheme (Emissary reads it so; the
    /// validator warns).
    pub http: bool,
    /// The host.
    pub host: ServiceHost,
    /// The port, when written.
    pub port: Option<u16>,
}

/// Parses `service`. Accepts DNS names, IPv4 literals and bracketed IPv6 literals; a bare
/// IPv6 literal and any scheme other than `https://` are errors. Never panics.
pub fn parse_service(s: &str) -> Result<ParsedService, String> {
    let s = s.trim();
    let (https, http, rest) = match s.find("://") {
        Some(i) => {
            let scheme = s.get(..i).unwrap_or("");
            let rest = s.get(i + 3..).unwrap_or("");
            if scheme.eq_ignore_ascii_case("https") {
                (true, false, rest)
            } else if scheme.eq_ignore_ascii_case("http") {
                (false, true, rest)
            } else {
                return Err(format!(
                    "scheme `{scheme}://` is not supported (`https://` originates TLS, \
                     `http://` is cleartext)"
                ));
            }
        }
        None => (false, false, s),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err("service host is empty".into());
    }
    if rest.contains('/') {
        return Err(format!("`{s}` must not contain a path"));
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(format!("`{rest}`: missing `]` after the IPv6 address"));
        };
        let ip: Ipv6Addr = v6
            .parse()
            .map_err(|_| format!("`{v6}` is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(parse_port(p)?),
                None => return Err(format!("`{rest}`: expected `:PORT` after `]`")),
            },
        };
        (ServiceHost::Ip(IpAddr::V6(ip)), port)
    } else {
        match rest.matches(':').count() {
            0 => (host_of(rest)?, None),
            1 => {
                let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
                (host_of(h)?, Some(parse_port(p)?))
            }
            _ => {
                return Err(format!(
                    "`{rest}` looks like a bare IPv6 address: write it in brackets, e.g. `[::1]:9000`"
                ));
            }
        }
    };
    Ok(ParsedService {
        https,
        http,
        host,
        port,
    })
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "service port `{p}` must be a number from 1 to 65535"
        )),
        Ok(n) => Ok(n),
    }
}

fn host_of(h: &str) -> Result<ServiceHost, String> {
    if let Ok(ip) = h.parse::<Ipv4Addr>() {
        return Ok(ServiceHost::Ip(IpAddr::V4(ip)));
    }
    check_dns_name(h)?;
    Ok(ServiceHost::Dns(h.to_ascii_lowercase()))
}

/// A DNS name (the rule of `crate::hostname`), written with or without a trailing dot.
pub(crate) fn check_dns_name(h: &str) -> Result<(), String> {
    let name = h.strip_suffix('.').unwrap_or(h);
    if crate::hostname::is_valid(name.as_bytes()) {
        Ok(())
    } else {
        Err(format!("`{h}` is not a valid host name"))
    }
}

/// The upstream port when none is written: 443 when TLS is originated, else 80.
pub(crate) fn default_port(originates: bool) -> u16 {
    if originates { 443 } else { 80 }
}

/// `svc` in a mapping of another namespace than the proxy's becomes `svc.namespace`;
/// dotted names, `localhost` and IP literals are left as they are.
pub(crate) fn qualify(host: ServiceHost, mapping_ns: &str, proxy_ns: &str) -> ServiceHost {
    match host {
        ServiceHost::Dns(name)
            if !name.contains('.') && name != "localhost" && mapping_ns != proxy_ns =>
        {
            ServiceHost::Dns(format!("{name}.{mapping_ns}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dns(s: &str) -> ServiceHost {
        ServiceHost::Dns(s.into())
    }

    #[test]
    fn plain_names_ips_and_ports() {
        let p = parse_service("upstream:22").unwrap();
        assert_eq!(
            (p.https, p.host, p.port),
            (false, dns("upstream"), Some(22))
        );
        let p = parse_service("10.0.0.1").unwrap();
        assert_eq!(p.host, ServiceHost::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(p.port, None);
        let p = parse_service("https://Svc.NS:8443").unwrap();
        assert_eq!((p.https, p.host, p.port), (true, dns("svc.ns"), Some(8443)));
    }

    #[test]
    fn bracketed_ipv6_ok_bare_ipv6_error() {
        let p = parse_service("[::1]:9000").unwrap();
        assert_eq!(p.host, ServiceHost::Ip("::1".parse().unwrap()));
        assert_eq!(p.port, Some(9000));
        assert_eq!(parse_service("[fe80::1]").unwrap().port, None);
        let e = parse_service("::1").unwrap_err();
        assert!(e.contains("brackets"), "{e}");
        assert!(parse_service("[::1").is_err());
        assert!(parse_service("[::1]x").is_err());
        assert!(parse_service("[nothex]:1").is_err());
    }

    #[test]
    fn http_is_cleartext_other_schemes_are_errors() {
        let p = parse_service("http://upstream:80").unwrap();
        assert!(p.http && !p.https && p.port == Some(80));
        let e = parse_service("tcp://x").unwrap_err();
        assert!(e.contains("`http://` is cleartext"), "{e}");
        assert!(parse_service("https://x").is_ok());
    }

    #[test]
    fn bad_ports_and_names_are_errors() {
        assert!(parse_service("x:0").is_err());
        assert!(parse_service("x:65536").is_err());
        assert!(parse_service("x:").is_err());
        assert!(parse_service("x:http").is_err());
        assert!(parse_service("").is_err());
        assert!(parse_service("user@host:1").is_err());
        assert!(parse_service("a..b").is_err());
        assert!(parse_service("host/path").is_err());
        assert!(parse_service("-bad-:1").is_err());
    }

    #[test]
    fn default_port_depends_on_origination() {
        assert_eq!(default_port(true), 443);
        assert_eq!(default_port(false), 80);
    }

    #[test]
    fn namespace_qualification() {
        assert_eq!(qualify(dns("svc"), "other", "default"), dns("svc.other"));
        assert_eq!(qualify(dns("svc"), "default", "default"), dns("svc"));
        assert_eq!(qualify(dns("svc.ns"), "other", "default"), dns("svc.ns"));
        let ip = ServiceHost::Ip("10.0.0.1".parse().unwrap());
        assert_eq!(qualify(ip.clone(), "other", "default"), ip);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_service(&s);
        }

        #[test]
        fn never_panics_on_service_like_input(s in "(https?://)?\\[?[0-9a-fA-F:.\\]a-z-]{0,30}(:[0-9]{0,6})?") {
            if let Ok(p) = parse_service(&s) {
                prop_assert!(p.port != Some(0));
            }
        }

        #[test]
        fn name_port_round_trip(h in "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z]{1,5}){0,2}", port in 1u16..) {
            let p = parse_service(&format!("{h}:{port}")).unwrap();
            prop_assert_eq!(p.host, ServiceHost::Dns(h));
            prop_assert_eq!(p.port, Some(port));
        }
    }
}
