//! Secret names → files under `--secrets-dir`, and reading PEM files with errors that name them.
//!
//! Layout (a mounted Kubernetes TLS secret per folder):
//! - `secret: NAME` → `<dir>/NAME/tls.crt` + `tls.key`;
//! - `secret: NAME.NS` (split at the last dot, when `secret_namespacing` is true) → `<dir>/NS/NAME/`;
//! - `ca_secret` → `ca.crt` in its folder when present, else its `tls.crt`.
//!
//! A plain `NAME` is not looked up in the resource's namespace: `<dir>/NAME/`, as docs/config.md
//! ("Secrets") says.
//!
//! `kind: Secret` documents among the config paths (what `kubectl get secrets -o yaml` prints)
//! come first: [`Files::add_secret_docs`] decodes their `tls.crt`, `tls.key` and `ca.crt` into
//! a virtual folder `FILE#Secret/NS/NAME/` (a path under a regular file, so it can never name a
//! real one), and [`Files::kube_secret`] finds one by name, namespace-aware.
//!
//! [`Files`] is the reader's side: every file a config names is read here, once, before
//! validation, which then works on memory only (and can be run on files that never touched a
//! disk, as tests and fuzzing do).
//!
//! Must not: parse PEM (that is `tls`) or know about resources beyond their names.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The files a config refers to, read before validation: each one's bytes (or why it could
/// not be read) and its mode bits; plus which document names are real config files (their
/// directory anchors relative certificate paths).
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Files {
    entries: HashMap<PathBuf, FileEntry>,
    config_files: HashSet<PathBuf>,
    /// `kind: Secret` documents by `(namespace, name)`; the first of a name applies. Not sent
    /// to workers: they read the Secret documents from the config texts again.
    #[serde(skip)]
    kube: HashMap<(String, String), KubeSecret>,
    /// The namespace of resources that name none (the proxy's).
    namespace: String,
}

/// The type of a TLS secret (`kubectl create secret tls`).
pub(crate) const TLS_TYPE: &str = "kubernetes.io/tls";

/// Istio's certificate Secret type: `cert-chain.pem`, `key.pem`, `root-cert.pem` (read as
/// `tls.crt`, `tls.key`, `ca.crt`).
pub(crate) const ISTIO_TYPE: &str = "istio.io/key-and-cert";

/// The keys of a Secret that tcpmap reads.
const SECRET_KEYS: [&str; 4] = ["tls.crt", "tls.key", "ca.crt", "crl.pem"];

/// A `kind: Secret` document of the config.
#[derive(Debug, Clone)]
pub(crate) struct KubeSecret {
    /// `NS/NAME`.
    pub id: String,
    /// `type` (`Opaque` when absent, as in Kubernetes).
    pub secret_type: String,
    /// `FILE:LINE` of the document.
    pub place: String,
    /// The virtual folder holding its `tls.crt`, `tls.key` and `ca.crt` entries.
    pub folder: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FileEntry {
    bytes: Result<Vec<u8>, String>,
    /// Mode bits and owner uid, when the file's metadata could be read.
    mode: Option<u32>,
    owner: Option<u32>,
}

/// True when a private key file with these mode bits and owner can be read by someone other
/// than its owner and root: readable by others, or by its group unless root owns it. Group
/// read on a root-owned file is what Kubernetes mounts with `fsGroup` (root:fsGroup, 0440) and
/// what PostgreSQL accepts for its key (0640 owned by root).
pub(crate) fn key_mode_exposed(mode: u32, owner: Option<u32>) -> bool {
    mode & 0o004 != 0 || (mode & 0o040 != 0 && owner != Some(0))
}

/// Mode bits and owner uid of `path` (`None`s when its metadata cannot be read).
fn mode_and_owner(path: &Path) -> (Option<u32>, Option<u32>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match fs::metadata(path) {
        Ok(m) => (Some(m.permissions().mode()), Some(m.uid())),
        Err(_) => (None, None),
    }
}

/// The key names of an `istio.io/key-and-cert` Secret for `tls.crt`, `tls.key` and `ca.crt`.
fn istio_key(k: &str) -> Option<&'static str> {
    match k {
        "tls.crt" => Some("cert-chain.pem"),
        "tls.key" => Some("key.pem"),
        "ca.crt" => Some("root-cert.pem"),
        _ => None,
    }
}

/// The istio file standing in for `path` (`…/tls.crt` → `…/cert-chain.pem`, …).
fn istio_alias(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    Some(path.with_file_name(istio_key(name)?))
}

impl Files {
    /// An empty store that knows which document names are config files on disk.
    pub(crate) fn with_config_files(config_files: impl IntoIterator<Item = PathBuf>) -> Files {
        Files {
            entries: HashMap::new(),
            config_files: config_files.into_iter().collect(),
            ..Files::default()
        }
    }

    /// Reads each of `paths` from disk (once each); a failed read is kept as its error.
    pub(crate) fn read_from_disk(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        for path in paths {
            if self.entries.contains_key(&path) {
                continue;
            }
            let mut bytes =
                fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
            let (mut mode, mut owner) = mode_and_owner(&path);
            // A mounted `istio.io/key-and-cert` Secret names its keys its own way.
            if let (Err(_), Some(alt)) = (&bytes, istio_alias(&path)) {
                if let Ok(b) = fs::read(&alt) {
                    bytes = Ok(b);
                    (mode, owner) = mode_and_owner(&alt);
                }
            }
            self.entries.insert(path, FileEntry { bytes, mode, owner });
        }
    }

    /// Records every `kind: Secret` (`apiVersion: v1`) document of `docs` as a secret source;
    /// `namespace` is the proxy's (for documents and resources that name none). Each key read
    /// (`tls.crt`, `tls.key`, `ca.crt`; `stringData` over `data`, as Kubernetes merges them)
    /// becomes a file entry in the Secret's folder; a key that is missing or not valid base64 is
    /// kept as the error a reader of that key gets. Returns the problems of the documents
    /// themselves: a missing name (error), a second Secret of the same name, and a config file
    /// on disk that holds a private key and is readable by group or others (warnings).
    pub(crate) fn add_secret_docs(
        &mut self,
        docs: &[super::source::SourceDoc],
        namespace: &str,
    ) -> Vec<super::ConfigError> {
        use serde_yaml_ng::Value;
        self.namespace = namespace.to_string();
        let mut problems = Vec::new();
        let mut warned_files: HashSet<PathBuf> = HashSet::new();
        for doc in docs {
            let v = &doc.value;
            if v.get("kind").and_then(Value::as_str) != Some("Secret")
                || v.get("apiVersion").and_then(Value::as_str) != Some("v1")
            {
                continue;
            }
            let meta = v.get("metadata");
            let Some(name) = meta.and_then(|m| m.get("name")).and_then(Value::as_str) else {
                problems.push(super::ConfigError::error(
                    &doc.file,
                    doc.line,
                    "Secret",
                    "-",
                    "metadata.name is required",
                ));
                continue;
            };
            let ns = meta
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            let place = format!("{}:{}", doc.file.display(), doc.line);
            let key = (ns.to_string(), name.to_string());
            if let Some(first) = self.kube.get(&key) {
                problems.push(super::ConfigError::warning(
                    &doc.file,
                    doc.line,
                    "Secret",
                    name,
                    format!(
                        "another Secret {} is at {}; that one applies",
                        first.id, first.place
                    ),
                ));
                continue;
            }
            let secret = KubeSecret {
                id: format!("{ns}/{name}"),
                secret_type: v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("Opaque")
                    .to_string(),
                place,
                folder: PathBuf::from(format!("{}#Secret/{ns}/{name}", doc.file.display())),
            };
            for k in SECRET_KEYS {
                let bytes = secret_key(doc, &secret, k);
                let entry = FileEntry {
                    bytes,
                    mode: None,
                    owner: None,
                };
                self.entries.insert(secret.folder.join(k), entry);
            }
            let holds_key = self
                .entries
                .get(&secret.folder.join("tls.key"))
                .is_some_and(|e| e.bytes.as_ref().is_ok_and(|b| !b.is_empty()));
            if holds_key && self.is_config_file(&doc.file) && !warned_files.contains(&doc.file) {
                let (mode, owner) = mode_and_owner(&doc.file);
                if let Some(mode) = mode.filter(|m| key_mode_exposed(*m, owner)) {
                    warned_files.insert(doc.file.clone());
                    let line = [["data", "tls.key"], ["stringData", "tls.key"]]
                        .iter()
                        .map(|keys| doc.key_line(keys))
                        .find(|l| *l != doc.line)
                        .unwrap_or(doc.line);
                    problems.push(super::ConfigError::warning(
                        &doc.file,
                        line,
                        "Secret",
                        name,
                        format!(
                            "config file {} holds a private key and is readable by group or \
                             others (mode {:o}); make it 0600",
                            doc.file.display(),
                            mode & 0o777
                        ),
                    ));
                }
            }
            self.kube.insert(key, secret);
        }
        problems
    }

    /// The Secret document `name` refers to: with `namespacing`, `NAME.NS` (split at the last
    /// dot) is `NAME` in `NS`; else, or when there is no such Secret, `name` in `ns` (the
    /// resource's namespace; the proxy's when `None`). Kubernetes names may hold dots, hence
    /// the second try.
    pub(crate) fn kube_secret(
        &self,
        name: &str,
        namespacing: bool,
        ns: Option<&str>,
    ) -> Option<&KubeSecret> {
        let split = name
            .rsplit_once('.')
            .filter(|(n, s)| namespacing && !n.is_empty() && !s.is_empty());
        let by = |ns: &str, n: &str| self.kube.get(&(ns.to_string(), n.to_string()));
        split
            .and_then(|(n, s)| by(s, n))
            .or_else(|| by(ns.unwrap_or(&self.namespace), name))
    }

    /// The Secret document named `name` in namespace `ns` exactly (a Host's
    /// `tlsSecret: {name, namespace}`).
    pub(crate) fn kube_secret_in(&self, name: &str, ns: &str) -> Option<&KubeSecret> {
        self.kube.get(&(ns.to_string(), name.to_string()))
    }

    /// Adds a file from memory (tests).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, path: impl Into<PathBuf>, bytes: Vec<u8>, mode: u32) {
        let entry = FileEntry {
            bytes: Ok(bytes),
            mode: Some(mode),
            owner: Some(1000),
        };
        self.entries.insert(path.into(), entry);
    }

    /// True when `doc` (a document's file name) is a config file on disk.
    pub(crate) fn is_config_file(&self, doc: &Path) -> bool {
        self.config_files.contains(doc)
    }

    /// True when `path` was read successfully.
    pub(crate) fn exists(&self, path: &Path) -> bool {
        self.entries.get(path).is_some_and(|e| e.bytes.is_ok())
    }

    /// The mode bits of `path`, when known.
    pub(crate) fn mode(&self, path: &Path) -> Option<u32> {
        self.entries.get(path).and_then(|e| e.mode)
    }

    /// The owner uid of `path`, when known.
    pub(crate) fn owner(&self, path: &Path) -> Option<u32> {
        self.entries.get(path).and_then(|e| e.owner)
    }

    /// A PEM file's bytes; missing, unreadable and empty files are errors naming the file.
    pub(crate) fn pem(&self, path: &Path) -> Result<&[u8], String> {
        let bytes = match self.entries.get(path).map(|e| &e.bytes) {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(format!("cannot read {}: not loaded", path.display())),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(format!("{} is empty", path.display()));
        }
        Ok(bytes)
    }
}

/// The bytes of key `k` of a Secret document: `stringData.k` as written, else `data.k`
/// decoded from base64; a missing key or bad base64 is the error naming the document.
fn secret_key(
    doc: &super::source::SourceDoc,
    secret: &KubeSecret,
    k: &str,
) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use serde_yaml_ng::Value;
    let v = &doc.value;
    let k = match istio_key(k) {
        Some(alt) if secret.secret_type == ISTIO_TYPE => alt,
        _ => k,
    };
    if let Some(s) = v
        .get("stringData")
        .and_then(|d| d.get(k))
        .and_then(Value::as_str)
    {
        return Ok(s.as_bytes().to_vec());
    }
    let Some(data) = v.get("data").and_then(|d| d.get(k)) else {
        return Err(format!(
            "Secret {} at {} has no `{k}`",
            secret.id, secret.place
        ));
    };
    let line = doc.key_line(&["data", k]);
    let text = data.as_str().ok_or_else(|| {
        let file = doc.file.display();
        format!(
            "{file}:{line}: Secret {}: `data.{k}` must be a base64 string",
            secret.id
        )
    })?;
    // kubectl prints one line; a hand-written value may be wrapped.
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| {
            let file = doc.file.display();
            format!(
                "{file}:{line}: Secret {}: `data.{k}` is not valid base64 ({e})",
                secret.id
            )
        })
}

/// The folder of secret `name`.
pub(crate) fn secret_dir(secrets_dir: &Path, name: &str, namespacing: bool) -> PathBuf {
    match name.rsplit_once('.') {
        Some((n, ns)) if namespacing && !n.is_empty() && !ns.is_empty() => {
            secrets_dir.join(ns).join(n)
        }
        _ => secrets_dir.join(name),
    }
}

/// The folder of secret `name` in namespace `ns` (a Host's `tlsSecret.namespace`).
pub(crate) fn secret_dir_in(secrets_dir: &Path, name: &str, ns: &str) -> PathBuf {
    secrets_dir.join(ns).join(name)
}

/// `tls.crt` of a secret folder.
pub(crate) fn cert_file(dir: &Path) -> PathBuf {
    dir.join("tls.crt")
}

/// `crl.pem` of a secret folder (`crl_secret`; its `tls.crt` when absent).
pub(crate) fn crl_file(dir: &Path) -> PathBuf {
    dir.join("crl.pem")
}

/// `tls.key` of a secret folder.
pub(crate) fn key_file(dir: &Path) -> PathBuf {
    dir.join("tls.key")
}

/// `ca.crt` of a secret folder (its CA when present; else the folder's `tls.crt` is).
pub(crate) fn ca_crt_file(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

/// The CA file of a secret folder: `ca.crt` when it was read, else `tls.crt`.
pub(crate) fn ca_file(dir: &Path, files: &Files) -> PathBuf {
    let ca = ca_crt_file(dir);
    if files.exists(&ca) {
        ca
    } else {
        cert_file(dir)
    }
}

/// A `cert_chain_file`-style path: absolute as written, relative to `base` (the directory
/// of the config file that names it) otherwise.
pub(crate) fn resolve_file(base: Option<&Path>, path: &str) -> PathBuf {
    let p = Path::new(path);
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_namespaced_names() {
        let d = Path::new("/s");
        assert_eq!(
            secret_dir(d, "supersecret", true),
            Path::new("/s/supersecret")
        );
        assert_eq!(secret_dir(d, "cert.prod", true), Path::new("/s/prod/cert"));
        assert_eq!(secret_dir(d, "a.b.prod", true), Path::new("/s/prod/a.b"));
        assert_eq!(secret_dir(d, "cert.prod", false), Path::new("/s/cert.prod"));
        assert_eq!(secret_dir(d, "trailing.", true), Path::new("/s/trailing."));
        assert_eq!(secret_dir_in(d, "c", "ns"), Path::new("/s/ns/c"));
    }

    fn read(paths: &[PathBuf]) -> Files {
        let mut files = Files::default();
        files.read_from_disk(paths.iter().cloned());
        files
    }

    #[test]
    fn ca_prefers_ca_crt_over_tls_crt() {
        let dir = tempfile::tempdir().unwrap();
        let candidates = [ca_crt_file(dir.path()), cert_file(dir.path())];
        assert_eq!(
            ca_file(dir.path(), &read(&candidates)),
            dir.path().join("tls.crt")
        );
        fs::write(dir.path().join("ca.crt"), "x").unwrap();
        assert_eq!(
            ca_file(dir.path(), &read(&candidates)),
            dir.path().join("ca.crt")
        );
    }

    #[test]
    fn missing_and_empty_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("tls.crt");
        assert!(
            read(std::slice::from_ref(&missing))
                .pem(&missing)
                .unwrap_err()
                .contains("tls.crt")
        );
        fs::write(&missing, "  \n").unwrap();
        assert!(
            read(std::slice::from_ref(&missing))
                .pem(&missing)
                .unwrap_err()
                .contains("is empty")
        );
        fs::write(&missing, "-----BEGIN").unwrap();
        assert!(read(std::slice::from_ref(&missing)).pem(&missing).is_ok());
        assert!(
            Files::default()
                .pem(&missing)
                .unwrap_err()
                .contains("not loaded")
        );
    }

    #[test]
    fn a_key_is_exposed_when_others_or_a_non_root_group_can_read_it() {
        let user = Some(1000);
        assert!(!key_mode_exposed(0o100600, user));
        assert!(!key_mode_exposed(0o100400, user));
        assert!(key_mode_exposed(0o100640, user));
        assert!(key_mode_exposed(0o100604, user));
        assert!(key_mode_exposed(0o100644, None));
        // Kubernetes with fsGroup: root-owned, group-readable.
        assert!(!key_mode_exposed(0o100440, Some(0)));
        assert!(!key_mode_exposed(0o100640, Some(0)));
        assert!(key_mode_exposed(0o100444, Some(0)));
    }

    #[test]
    fn files_from_memory_carry_their_mode() {
        let mut files = Files::default();
        files.insert("/s/a/tls.key", b"k".to_vec(), 0o100644);
        assert!(files.exists(Path::new("/s/a/tls.key")));
        assert_eq!(files.mode(Path::new("/s/a/tls.key")), Some(0o100644));
        assert!(!files.exists(Path::new("/s/a/tls.crt")));
    }

    #[test]
    fn secret_documents_are_found_by_namespace_and_dotted_names() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: www.example.com, namespace: web}\ntype: kubernetes.io/tls\nstringData: {tls.crt: C, tls.key: K}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: plain}\ndata: {ca.crt: Q0E=}\n";
        let (docs, _) = super::super::source::parse_text(Path::new("s.yaml"), text);
        let mut files = Files::default();
        assert!(files.add_secret_docs(&docs, "default").is_empty());
        // `www.example.com` splits into `www` in namespace `example.com`: none; then the
        // whole name in the resource's namespace.
        let k = files
            .kube_secret("www.example.com", true, Some("web"))
            .unwrap();
        assert_eq!(
            (k.id.as_str(), k.secret_type.as_str()),
            ("web/www.example.com", TLS_TYPE)
        );
        assert_eq!(files.pem(&k.folder.join("tls.crt")).unwrap(), b"C");
        assert!(files.kube_secret("www.example.com", true, None).is_none());
        // No namespace: the proxy's; no type: Opaque; `data` is base64.
        let p = files.kube_secret("plain", true, None).unwrap();
        assert_eq!(
            (p.id.as_str(), p.secret_type.as_str()),
            ("default/plain", "Opaque")
        );
        assert_eq!(files.pem(&p.folder.join("ca.crt")).unwrap(), b"CA");
        assert!(
            files
                .kube_secret("plain.default", true, Some("x"))
                .is_some()
        );
        assert!(
            files
                .kube_secret("plain.default", false, Some("x"))
                .is_none()
        );
        let missing = files.pem(&p.folder.join("tls.key")).unwrap_err();
        assert_eq!(missing, "Secret default/plain at s.yaml:7 has no `tls.key`");
        assert!(!files.exists(&p.folder.join("tls.crt")));
    }

    proptest::proptest! {
        /// Any bytes survive `data` as kubectl prints it (one base64 line) or wrapped at 76
        /// columns, as a hand-written value may be.
        #[test]
        fn base64_data_decodes_to_the_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), wrap in proptest::bool::ANY) {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let value = if wrap {
                let lines: Vec<String> = b64.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
                format!("|\n      {}", lines.join("\n      "))
            } else {
                format!("\"{b64}\"")
            };
            let text = format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {value}\n");
            let (docs, errs) = super::super::source::parse_text(Path::new("p.yaml"), &text);
            proptest::prop_assert!(errs.is_empty(), "{:?}", errs);
            let mut files = Files::default();
            files.add_secret_docs(&docs, "default");
            let k = files.kube_secret("s", true, None).unwrap();
            let entry = files.entries.get(&k.folder.join("tls.crt")).unwrap();
            proptest::prop_assert_eq!(entry.bytes.as_ref().unwrap(), &bytes);
        }
    }

    #[test]
    fn relative_files_resolve_against_the_config_dir() {
        assert_eq!(
            resolve_file(Some(Path::new("/cfg")), "c.pem"),
            Path::new("/cfg/c.pem")
        );
        assert_eq!(
            resolve_file(Some(Path::new("/cfg")), "/abs.pem"),
            Path::new("/abs.pem")
        );
        assert_eq!(resolve_file(None, "c.pem"), Path::new("c.pem"));
    }
}
