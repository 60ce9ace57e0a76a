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
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FileEntry {
    bytes: Result<Vec<u8>, String>,
    mode: Option<u32>,
}

impl Files {
    /// An empty store that knows which document names are config files on disk.
    pub(crate) fn with_config_files(config_files: impl IntoIterator<Item = PathBuf>) -> Files {
        Files {
            entries: HashMap::new(),
            config_files: config_files.into_iter().collect(),
        }
    }

    /// Reads each of `paths` from disk (once each); a failed read is kept as its error.
    pub(crate) fn read_from_disk(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        use std::os::unix::fs::PermissionsExt;
        for path in paths {
            if self.entries.contains_key(&path) {
                continue;
            }
            let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
            let mode = fs::metadata(&path).ok().map(|m| m.permissions().mode());
            self.entries.insert(path, FileEntry { bytes, mode });
        }
    }

    /// Adds a file from memory (tests).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, path: impl Into<PathBuf>, bytes: Vec<u8>, mode: u32) {
        let entry = FileEntry {
            bytes: Ok(bytes),
            mode: Some(mode),
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
    fn files_from_memory_carry_their_mode() {
        let mut files = Files::default();
        files.insert("/s/a/tls.key", b"k".to_vec(), 0o100644);
        assert!(files.exists(Path::new("/s/a/tls.key")));
        assert_eq!(files.mode(Path::new("/s/a/tls.key")), Some(0o100644));
        assert!(!files.exists(Path::new("/s/a/tls.crt")));
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
