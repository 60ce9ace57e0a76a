use super::*;
use crate::config::raw::Resource;
use crate::config::testutil::{resource, write_secret};

fn raw(attrs: &str) -> RawTlsContext {
    let y = format!("apiVersion: ambassador/v1\nkind: TLSContext\nname: c\n{attrs}");
    match resource(&y) {
        Resource::Context(c) => c,
        other => panic!("{other:?}"),
    }
}

// The functions under test read from `Files`; these shims read what a resource names from
// disk first, as `config::load` does, so the tests keep writing real secret folders.
fn on_disk(resource: Resource, dir: Option<&Path>) -> Files {
    let mut files = Files::default();
    files.read_from_disk(referenced_files(&[resource], dir, &Files::default()));
    files
}

fn context(raw: &RawTlsContext, dir: Option<&Path>) -> (Option<TlsContext>, Vec<ConfigError>) {
    let files = on_disk(Resource::Context(raw.clone()), dir);
    super::context(raw, dir, &files)
}

fn host(raw: &RawHost, dir: Option<&Path>) -> (Option<Host>, Vec<ConfigError>) {
    let files = on_disk(Resource::Host(raw.clone()), dir);
    super::host(raw, dir, &files)
}

fn cert_paths(
    raw: &RawTlsContext,
    dir: Option<&Path>,
) -> Result<Option<(PathBuf, PathBuf, &'static str)>, Keyed> {
    super::cert_paths(raw, dir, &Files::default())
}

fn ca_path(raw: &RawTlsContext, dir: Option<&Path>) -> Result<Option<PathBuf>, Keyed> {
    let files = on_disk(Resource::Context(raw.clone()), dir);
    super::ca_path(raw, dir, &files)
}

#[test]
fn validation_reads_only_the_files_it_is_given() {
    let ck = rcgen::generate_simple_self_signed(vec!["mem-host".to_string()]).unwrap();
    let raw = raw("hosts: [mem-host]\nsecret: mem\n");
    let dir = Path::new("/nonexistent-secrets");
    let mut files = Files::default();
    files.insert(
        dir.join("mem/tls.crt"),
        ck.cert.pem().into_bytes(),
        0o100600,
    );
    files.insert(
        dir.join("mem/tls.key"),
        ck.key_pair.serialize_pem().into_bytes(),
        0o100644,
    );
    let (c, warnings) = super::context(&raw, Some(dir), &files);
    assert!(c.is_some_and(|c| c.cert.is_some()), "{warnings:?}");
    // The key's mode comes from the store too: 0644 earns the permission warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].message.contains("readable by group or others"),
        "{warnings:?}"
    );
    let (c, errs) = super::context(&raw, Some(dir), &Files::default());
    assert!(
        c.is_none() && errs[0].message.contains("not loaded"),
        "{errs:?}"
    );
}

fn errors(attrs: &str, dir: Option<&Path>) -> Vec<String> {
    let (_, errs) = context(&raw(attrs), dir);
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn secret_resolves_plain_and_namespaced_folders() {
    let d = Path::new("/s");
    let (c, k, _) = cert_paths(&raw("secret: sup\n"), Some(d)).unwrap().unwrap();
    assert_eq!(
        (c.as_path(), k.as_path()),
        (Path::new("/s/sup/tls.crt"), Path::new("/s/sup/tls.key"))
    );
    let (c, _, _) = cert_paths(&raw("secret: sup.prod\n"), Some(d))
        .unwrap()
        .unwrap();
    assert_eq!(c, Path::new("/s/prod/sup/tls.crt"));
    let (c, _, _) = cert_paths(
        &raw("secret: sup.prod\nsecret_namespacing: false\n"),
        Some(d),
    )
    .unwrap()
    .unwrap();
    assert_eq!(c, Path::new("/s/sup.prod/tls.crt"));
}

#[test]
fn secret_needs_secrets_dir() {
    let e = cert_paths(&raw("secret: sup\n"), None).unwrap_err();
    assert_eq!(
        e,
        (
            "secret",
            "secret `sup` is not a Secret in the config and needs --secrets-dir".to_string()
        )
    );
}

#[test]
fn secret_and_files_are_exclusive_and_files_come_in_pairs() {
    assert!(
        cert_paths(
            &raw("secret: a\ncert_chain_file: /c\n"),
            Some(Path::new("/s"))
        )
        .is_err()
    );
    assert_eq!(
        cert_paths(&raw("cert_chain_file: /c\n"), None)
            .unwrap_err()
            .0,
        "cert_chain_file"
    );
    assert_eq!(
        cert_paths(&raw("private_key_file: /k\n"), None)
            .unwrap_err()
            .0,
        "private_key_file"
    );
    let ok = cert_paths(&raw("cert_chain_file: /c\nprivate_key_file: /k\n"), None).unwrap();
    assert_eq!(ok.unwrap().0, Path::new("/c"));
    assert_eq!(cert_paths(&raw("sni: x\n"), None).unwrap(), None);
}

#[test]
fn ca_prefers_ca_crt_and_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "ca", &["ca"]);
    let p = ca_path(&raw("ca_secret: ca\n"), Some(dir.path()))
        .unwrap()
        .unwrap();
    assert!(p.ends_with("ca/tls.crt"));
    std::fs::write(dir.path().join("ca/ca.crt"), "x").unwrap();
    let p = ca_path(&raw("ca_secret: ca\n"), Some(dir.path()))
        .unwrap()
        .unwrap();
    assert!(p.ends_with("ca/ca.crt"));
    assert!(
        ca_path(
            &raw("ca_secret: ca\ncacert_chain_file: /x\n"),
            Some(dir.path())
        )
        .is_err()
    );
}

#[test]
fn cert_required_needs_a_ca() {
    assert!(check_cert_required(true, false).is_err());
    assert!(check_cert_required(true, true).is_ok());
    assert!(check_cert_required(false, false).is_ok());
}

#[test]
fn minimum_below_1_2_warns_maximum_below_1_2_and_inverted_ranges_are_errors() {
    assert_eq!(
        versions(Some("v1.2"), Some("v1.3")).unwrap(),
        (Some(TlsVersion::V1_2), Some(TlsVersion::V1_3), None)
    );
    for old in ["v1.0", "v1.1", "TLSv1_0"] {
        let (lo, hi, w) = versions(Some(old), None).unwrap();
        assert_eq!((lo, hi), (None, None));
        let (key, msg) = w.unwrap();
        assert_eq!(key, "min_tls_version");
        assert!(msg.contains("TLS 1.2 and up are served"), "{msg}");
    }
    assert_eq!(
        versions(None, Some("v1.0")).unwrap_err().0,
        "max_tls_version"
    );
    assert_eq!(
        versions(Some("v1.3"), Some("v1.2")).unwrap_err().0,
        "min_tls_version"
    );
    assert_eq!(versions(None, None).unwrap(), (None, None, None));
}

#[test]
fn hosts_need_a_certificate() {
    assert!(check_hosts_have_cert(&["a".into()], false).is_err());
    assert!(check_hosts_have_cert(&["a".into()], true).is_ok());
    assert!(check_hosts_have_cert(&[], false).is_ok());
}

#[test]
fn good_context_loads_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "sup", &["my-host-1"]);
    let (c, errs) = context(
        &raw("hosts: [my-host-1]\nsecret: sup\nsni: up\nalpn_protocols: [h2]\n"),
        Some(dir.path()),
    );
    assert!(errs.is_empty(), "{errs:?}");
    let c = c.unwrap();
    assert_eq!(c.cert.unwrap().chain.len(), 1);
    assert_eq!(c.sni.as_deref(), Some("up"));
    assert_eq!(c.params.alpn_protocols, ["h2"]);
}

#[test]
fn missing_empty_and_mismatched_files_name_the_context_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = errors("secret: nope\n", Some(dir.path()));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("t.yaml:4: TLSContext c: cannot read ") && e[0].contains("nope/tls.crt"),
        "{e:?}"
    );

    write_secret(dir.path(), "a", &["a"]);
    write_secret(dir.path(), "b", &["b"]);
    std::fs::copy(dir.path().join("b/tls.key"), dir.path().join("a/tls.key")).unwrap();
    let e = errors("secret: a\n", Some(dir.path()));
    assert!(
        e[0].contains("a/tls.key") && e[0].contains("does not match"),
        "{e:?}"
    );

    std::fs::write(dir.path().join("b/tls.crt"), "").unwrap();
    let e = errors("secret: b\n", Some(dir.path()));
    assert!(e[0].contains("b/tls.crt is empty"), "{e:?}");

    std::fs::write(dir.path().join("b/tls.crt"), "not pem\n").unwrap();
    let e = errors("secret: b\n", Some(dir.path()));
    assert!(
        e[0].contains("b/tls.crt") && e[0].contains("no certificate"),
        "{e:?}"
    );
}

#[test]
fn old_versions_and_unknown_suites_warn_at_their_lines_the_rest_stay_errors() {
    let e = errors(
        "min_tls_version: v1.0\ncipher_suites: [RC4-MD5, ECDHE-RSA-AES128-GCM-SHA256]\ncert_required: true\n",
        None,
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e.iter().any(
        |l| l.starts_with("warning: t.yaml:4: TLSContext c: min_tls_version v1.0")
            && l.contains("TLS 1.2 and up are served")
    ));
    assert!(
        e.iter()
            .any(|l| l.starts_with("warning: t.yaml:5: TLSContext c: ")
                && l.contains("\"RC4-MD5\" is not offered by rustls"))
    );
    assert!(
        e.iter()
            .any(|l| l.starts_with("t.yaml:6: TLSContext c: ") && l.contains("cert_required")),
        "{e:?}"
    );
    // Nothing left for TLS 1.2: only TLS 1.3 is served (a warning); with max v1.2, an error.
    let e = errors("cipher_suites: [AES128-SHA]\n", None);
    assert!(e.iter().all(|l| l.starts_with("warning:")), "{e:?}");
    assert!(
        e.iter().any(|l| l.contains("TLS 1.2 is not served")),
        "{e:?}"
    );
    let e = errors("cipher_suites: [AES128-SHA]\nmax_tls_version: v1.2\n", None);
    assert!(
        e.iter()
            .any(|l| l.starts_with("t.yaml:4: TLSContext c: no listed cipher suite")),
        "{e:?}"
    );
    let e = errors("max_tls_version: v1.1\n", None);
    assert!(
        e.iter()
            .any(|l| l.starts_with("t.yaml:4: TLSContext c: max_tls_version v1.1"))
    );
    let e = errors("ecdh_curves: [X25519, brainpoolP256r1]\n", None);
    assert!(
        e.iter().any(|l| l
            .starts_with("t.yaml:4: TLSContext c: unknown ecdh_curves entry \"brainpoolP256r1\"")),
        "{e:?}"
    );
    assert!(errors("cipher_suites: [TLS13_AES_256_GCM_SHA384]\n", None).is_empty());
}

fn host_raw(spec: &str) -> RawHost {
    let y = format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: h\n  namespace: web\nspec:\n{spec}"
    );
    match resource(&y) {
        Resource::Host(h) => h,
        other => panic!("{other:?}"),
    }
}

#[test]
fn host_loads_its_tls_secret_and_serves_any_name_without_a_hostname() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "web/wild", &["*.example.com"]);
    let (h, errs) = host(
        &host_raw(
            "  hostname: \"*.Example.com\"\n  tlsSecret:\n    name: wild\n    namespace: web\n",
        ),
        Some(dir.path()),
    );
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(h.unwrap().hostname, "*.example.com");
    let (h, errs) = host(
        &host_raw("  tlsSecret: {name: wild, namespace: web}\n"),
        Some(dir.path()),
    );
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(h.unwrap().hostname, "*");
    let (h, errs) = host(
        &host_raw("  hostname: a\n  tlsSecret: {name: missing}\n"),
        Some(dir.path()),
    );
    assert!(
        h.is_none() && errs[0].message.contains("missing/tls.crt"),
        "{errs:?}"
    );
}
