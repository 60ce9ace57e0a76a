//! Environment requirements of a test (IPv6 loopback, privileged ports, dnsmasq). A missing
//! requirement FAILS the test, unless `TCPMAP_SKIP_<WHAT>=1` explicitly allows the skip: the
//! convention of the resolver's dnsmasq tests (`TCPMAP_SKIP_DNSMASQ`). A test that passes
//! without having run cannot lie about the environment.

/// Called when the environment lacks something: returns (so the caller can skip) only when
/// `TCPMAP_SKIP_<what>=1`; otherwise the test fails with `why` and the variable to set.
pub fn missing(what: &str, why: &str) {
    let var = format!("TCPMAP_SKIP_{what}");
    if std::env::var(&var).as_deref() == Ok("1") {
        eprintln!("skipped because {var}=1: {why}");
        return;
    }
    panic!("{why}; set {var}=1 to allow skipping this test");
}
