//! The ResolverActor against a real DNS server (Debian's dnsmasq) on loopback.
//!
//! Each test starts its own dnsmasq on a free port with `--local=/test/` (unknown names under
//! `test` are NXDOMAIN) and writes a resolv.conf pointing at it with the `ip:port` extension.
//! A missing dnsmasq fails the test with a message, unless `TCPMAP_SKIP_DNSMASQ=1`.

use std::net::UdpSocket;

use super::*;
use crate::testkit::dns::Dnsmasq;

const V4: Families = Families::new(true, false).unwrap();
const V6: Families = Families::new(false, true).unwrap();
const BOTH: Families = Families::new(true, true).unwrap();

/// Starts dnsmasq (the testkit's) with the standard test records, answering with TTL `ttl`;
/// `None` only when `TCPMAP_SKIP_DNSMASQ=1` and dnsmasq is missing.
fn start_dnsmasq(ttl: u32) -> Option<Dnsmasq> {
    let big: Vec<String> = (1..=60).map(|i| format!("127.0.1.{i}")).collect();
    let records: Vec<(&str, &str)> = big.iter().map(|ip| (ip.as_str(), "big.test")).collect();
    Dnsmasq::start_with(
        &records,
        ttl,
        &[
            "--host-record=v4.test,127.0.0.2",
            "--host-record=v6.test,::2",
            "--host-record=both.test,127.0.0.3,::3",
            "--host-record=host.test,127.0.0.4",
        ],
    )
}

/// A tempdir holding resolv.conf (with `conf` as its text) and a hosts file.
fn files(conf: &str) -> (tempfile::TempDir, ResolverConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("resolv.conf"), conf).unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "127.0.0.1 localhost\n10.9.9.9 fromhosts.example Alias\n::9 fromhosts.example\n",
    )
    .unwrap();
    let config = ResolverConfig {
        resolv_conf: dir.path().join("resolv.conf"),
        hosts_file: dir.path().join("hosts"),
        lookup_timeout: Duration::from_millis(1500),
        ..ResolverConfig::default()
    };
    (dir, config)
}

/// dnsmasq plus a resolver whose resolv.conf names it and searches `test`.
fn setup(extra_conf: &str) -> Option<(Dnsmasq, ResolverHandle, tempfile::TempDir)> {
    let dns = start_dnsmasq(60)?;
    let (files_dir, config) = files(&format!(
        "nameserver {}\nsearch test\n{extra_conf}",
        dns.addr
    ));
    Some((dns, ResolverHandle::spawn(config), files_dir))
}

fn dns(name: &str) -> ServiceHost {
    ServiceHost::Dns(name.to_owned())
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn a_aaaa_and_both_follow_the_family_policy() {
    let Some((_dns, resolver, _dir)) = setup("") else {
        return;
    };
    rt::block_on(async {
        assert_eq!(
            resolver.resolve(&dns("v4.test"), 80, V4).await,
            Ok(addrs(&["127.0.0.2:80"]))
        );
        assert_eq!(
            resolver.resolve(&dns("v6.test"), 80, V6).await,
            Ok(addrs(&["[::2]:80"]))
        );
        assert_eq!(
            resolver.resolve(&dns("both.test"), 443, BOTH).await,
            Ok(addrs(&["[::3]:443", "127.0.0.3:443"]))
        );
        assert_eq!(
            resolver.resolve(&dns("both.test"), 443, V4).await,
            Ok(addrs(&["127.0.0.3:443"]))
        );
        assert_eq!(
            resolver.resolve(&dns("both.test"), 443, V6).await,
            Ok(addrs(&["[::3]:443"]))
        );
        assert_eq!(
            resolver.resolve(&dns("v4.test"), 80, BOTH).await,
            Ok(addrs(&["127.0.0.2:80"]))
        );
        assert_eq!(
            resolver.resolve(&dns("v4.test"), 80, V6).await,
            Err(ResolveError::NoData("v4.test".into()))
        );
    });
}

#[test]
fn nxdomain_is_not_found_quickly_and_cached_negatively() {
    let Some((_dns, resolver, _dir)) = setup("") else {
        return;
    };
    rt::block_on(async {
        let started = Instant::now();
        let got = resolver.resolve(&dns("missing.test"), 80, V4).await;
        assert_eq!(got, Err(ResolveError::NotFound("missing.test".into())));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "took {:?}",
            started.elapsed()
        );
        let queries = resolver.stats().queries;
        let again = resolver.resolve(&dns("missing.test"), 80, V4).await;
        assert_eq!(again, Err(ResolveError::NotFound("missing.test".into())));
        let stats = resolver.stats();
        assert_eq!(stats.queries, queries, "the negative cache answered");
        assert_eq!((stats.cache_hits, stats.failures, stats.lookups), (1, 2, 2));
    });
}

#[test]
fn short_names_are_found_through_the_search_list() {
    let Some((_dns, resolver, _dir)) = setup("options ndots:1 timeout:1 attempts:2\n") else {
        return;
    };
    rt::block_on(async {
        assert_eq!(
            resolver.resolve(&dns("v4"), 80, V4).await,
            Ok(addrs(&["127.0.0.2:80"]))
        );
        assert_eq!(
            resolver.resolve(&dns("both"), 80, BOTH).await,
            Ok(addrs(&["[::3]:80", "127.0.0.3:80"]))
        );
        // Absolute names skip the search list.
        assert_eq!(
            resolver.resolve(&dns("v4."), 80, V4).await,
            Err(ResolveError::NotFound("v4.".into()))
        );
    });
}

#[test]
fn cached_answers_need_no_dns_server() {
    let Some((dnsmasq, resolver, _dir)) = setup("") else {
        return;
    };
    rt::block_on(async {
        assert_eq!(
            resolver.resolve(&dns("v4.test"), 80, V4).await,
            Ok(addrs(&["127.0.0.2:80"]))
        );
        let queries = resolver.stats().queries;
        drop(dnsmasq);
        assert_eq!(
            resolver.resolve(&dns("V4.TEST"), 8080, V4).await,
            Ok(addrs(&["127.0.0.2:8080"]))
        );
        assert_eq!(resolver.stats().queries, queries);
        assert_eq!(resolver.stats().cache_hits, 1);
    });
}

#[test]
fn records_expire_after_their_ttl() {
    let Some(dnsmasq) = start_dnsmasq(1) else {
        return;
    };
    let (_files, config) = files(&format!("nameserver {}\n", dnsmasq.addr));
    let resolver = ResolverHandle::spawn(config);
    rt::block_on(async {
        assert!(resolver.resolve(&dns("v4.test"), 80, V4).await.is_ok());
        assert!(resolver.resolve(&dns("v4.test"), 80, V4).await.is_ok());
        assert_eq!(
            (resolver.stats().queries, resolver.stats().cache_hits),
            (1, 1)
        );
        rt::sleep(Duration::from_millis(1100)).await;
        assert!(resolver.resolve(&dns("v4.test"), 80, V4).await.is_ok());
        assert_eq!(
            resolver.stats().queries,
            2,
            "the 1 s TTL expired, so DNS was asked again"
        );
    });
}

#[test]
fn truncated_udp_answers_are_fetched_over_tcp() {
    let Some((_dns, resolver, _dir)) = setup("") else {
        return;
    };
    rt::block_on(async {
        let got = resolver.resolve(&dns("big.test"), 80, V4).await.unwrap();
        assert_eq!(
            got.len(),
            60,
            "all 60 records, more than fit in 512 bytes of UDP"
        );
    });
}

#[test]
fn concurrent_requests_for_one_name_share_one_lookup() {
    let Some((_dns, resolver, _dir)) = setup("") else {
        return;
    };
    rt::block_on(async {
        let asks = (0..8).map(|_| {
            let r = resolver.clone();
            rt::spawn(async move {
                r.resolve(&ServiceHost::Dns("both.test".into()), 80, BOTH)
                    .await
            })
        });
        for task in asks.collect::<Vec<_>>() {
            assert_eq!(task.await, Ok(addrs(&["[::3]:80", "127.0.0.3:80"])));
        }
        assert_eq!(
            resolver.stats().queries,
            2,
            "one AAAA and one A question in total"
        );
    });
}

#[test]
fn hosts_file_matches_exact_names_only() {
    let Some((_dns, resolver, _dir)) = setup("") else {
        return;
    };
    rt::block_on(async {
        let got = resolver.resolve(&dns("FromHosts.Example"), 80, BOTH).await;
        assert_eq!(got, Ok(addrs(&["[::9]:80", "10.9.9.9:80"])));
        assert_eq!(
            resolver.resolve(&dns("alias"), 80, V4).await,
            Ok(addrs(&["10.9.9.9:80"]))
        );
        // `host` is not `localhost`: it goes to DNS, and the search list finds host.test.
        assert_eq!(
            resolver.resolve(&dns("host"), 80, V4).await,
            Ok(addrs(&["127.0.0.4:80"]))
        );
        assert_eq!(resolver.stats().queries, 1, "hosts-file names asked no DNS");
    });
}

#[test]
fn a_dead_nameserver_times_out_without_blocking_anything_else() {
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap(); // bound, never answers
    let (_files, mut config) = files(&format!(
        "nameserver {}\noptions timeout:5 attempts:2\n",
        dead.local_addr().unwrap()
    ));
    config.lookup_timeout = Duration::from_millis(600);
    let resolver = ResolverHandle::spawn(config);
    rt::block_on(async {
        let started = Instant::now();
        let slow = {
            let r = resolver.clone();
            rt::spawn(async move {
                r.resolve(&ServiceHost::Dns("slow.example".into()), 80, BOTH)
                    .await
            })
        };
        let other = {
            let r = resolver.clone();
            rt::spawn(async move {
                r.resolve(&ServiceHost::Dns("other.example".into()), 80, V4)
                    .await
            })
        };
        rt::sleep(Duration::from_millis(20)).await;
        let fast_started = Instant::now();
        let literal = resolver
            .resolve(&ServiceHost::Ip("192.0.2.1".parse().unwrap()), 80, V4)
            .await;
        let bracketed = resolver.resolve(&dns("[::1]"), 80, V6).await;
        let from_hosts = resolver.resolve(&dns("fromhosts.example"), 80, V4).await;
        assert!(
            fast_started.elapsed() < Duration::from_millis(200),
            "took {:?}",
            fast_started.elapsed()
        );
        assert_eq!(literal, Ok(addrs(&["192.0.2.1:80"])));
        assert_eq!(bracketed, Ok(addrs(&["[::1]:80"])));
        assert_eq!(from_hosts, Ok(addrs(&["10.9.9.9:80"])));
        assert_eq!(
            slow.await,
            Err(ResolveError::Timeout("slow.example".into()))
        );
        assert_eq!(
            other.await,
            Err(ResolveError::Timeout("other.example".into()))
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(580) && elapsed < Duration::from_millis(1000),
            "took {elapsed:?}"
        );
    });
}

#[test]
fn a_live_nameserver_answers_even_when_the_first_is_dead() {
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let Some(dnsmasq) = start_dnsmasq(60) else {
        return;
    };
    let conf = format!(
        "nameserver {}\nnameserver {}\n",
        dead.local_addr().unwrap(),
        dnsmasq.addr
    );
    let (_files, config) = files(&conf);
    let resolver = ResolverHandle::spawn(config);
    rt::block_on(async {
        let started = Instant::now();
        assert_eq!(
            resolver.resolve(&dns("v4.test"), 80, V4).await,
            Ok(addrs(&["127.0.0.2:80"]))
        );
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "took {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn literals_of_a_disallowed_family_are_no_data() {
    let (_files, config) = files("nameserver 127.0.0.1:9\n");
    let resolver = ResolverHandle::spawn(config);
    rt::block_on(async {
        let got = resolver
            .resolve(&ServiceHost::Ip("::1".parse().unwrap()), 80, V4)
            .await;
        assert_eq!(got, Err(ResolveError::NoData("::1".into())));
        assert_eq!(resolver.stats().failures, 1);
    });
}
