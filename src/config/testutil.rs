//! Test helpers: YAML → resources, certificates generated at test time.

use std::path::Path;
use std::sync::Arc;

use super::raw::{self, Classified, Resource};
use super::source::parse_text;

/// Classifies the single document of `yaml` (file name `t.yaml`, our id `default`).
pub(crate) fn classify(yaml: &str) -> Classified {
    let (docs, errs) = parse_text(Path::new("t.yaml"), yaml);
    assert!(errs.is_empty(), "{errs:?}");
    let doc = docs.into_iter().next().expect("one document");
    raw::classify(Arc::new(doc), "default")
}

/// The resource of `yaml`, asserting there were no problems.
pub(crate) fn resource(yaml: &str) -> Resource {
    let c = classify(yaml);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    c.resource.expect("a resource")
}

/// Writes a self-signed `tls.crt` + `tls.key` for `hosts` into `dir/rel/`.
pub(crate) fn write_secret(dir: &Path, rel: &str, hosts: &[&str]) {
    let ck =
        rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    let d = dir.join(rel);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join("tls.crt"), ck.cert.pem()).expect("write crt");
    std::fs::write(d.join("tls.key"), ck.key_pair.serialize_pem()).expect("write key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("tls.key"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod key");
}
