//! Secret names → files under `--secrets-dir`, and reading PEM files with errors that name them.
//!
//! Layout (a mounted Kubernetes TLS secret per folder):
//! - `secret: NAME` → `<dir>/NAME/tls.crt` + `tls.key`;
//! - `secret: NAME.NS` (split at the last dot, when `secret_namespacing` is true) → `<dir>/NS/NAME/`;
//! - `ca_secret` → `ca.crt` in its folder when present, else its `tls.crt`.
//!
//! A plain `NAME` is not looked up in the resource's namespace: `<dir>/NAME/`, as docs/config.md
//! ("Secrets") says.
//! Must not: parse PEM (that is `tls`) or know about resources beyond their names.

use std::fs;
use std::path::{Path, PathBuf};

/// The folder of secret `name`.
pub fn secret_dir(secrets_dir: &Path, name: &str, namespacing: bool) -> PathBuf {
    match name.rsplit_once('.') {
        Some((n, ns)) if namespacing && !n.is_empty() && !ns.is_empty() => {
            secrets_dir.join(ns).join(n)
        }
        _ => secrets_dir.join(name),
    }
}

/// The folder of secret `name` in namespace `ns` (a Host's `tlsSecret.namespace`).
pub fn secret_dir_in(secrets_dir: &Path, name: &str, ns: &str) -> PathBuf {
    secrets_dir.join(ns).join(name)
}

/// `tls.crt` of a secret folder.
pub fn cert_file(dir: &Path) -> PathBuf {
    dir.join("tls.crt")
}

/// `tls.key` of a secret folder.
pub fn key_file(dir: &Path) -> PathBuf {
    dir.join("tls.key")
}

/// The CA file of a secret folder: `ca.crt` when present, else `tls.crt`.
pub fn ca_file(dir: &Path) -> PathBuf {
    let ca = dir.join("ca.crt");
    if ca.exists() { ca } else { cert_file(dir) }
}

/// A `cert_chain_file`-style path: absolute as written, relative to `base` (the directory
/// of the config file that names it) otherwise.
pub fn resolve_file(base: Option<&Path>, path: &str) -> PathBuf {
    let p = Path::new(path);
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

/// Reads a PEM file; missing, unreadable and empty files are errors naming the file.
pub fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(bytes)
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

    #[test]
    fn ca_prefers_ca_crt_over_tls_crt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ca_file(dir.path()), dir.path().join("tls.crt"));
        fs::write(dir.path().join("ca.crt"), "x").unwrap();
        assert_eq!(ca_file(dir.path()), dir.path().join("ca.crt"));
    }

    #[test]
    fn missing_and_empty_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("tls.crt");
        assert!(read_pem(&missing).unwrap_err().contains("tls.crt"));
        fs::write(&missing, "  \n").unwrap();
        assert!(read_pem(&missing).unwrap_err().contains("is empty"));
        fs::write(&missing, "-----BEGIN").unwrap();
        assert!(read_pem(&missing).is_ok());
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
