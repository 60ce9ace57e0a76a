//! `TLSContext` and `Host` rules, one small function each, and parsing their secrets from the
//! [`Files`] read before validation (no I/O here: [`referenced_files`] says what to read).

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use crate::config::ConfigError;
use crate::config::model::{Host, TlsContext};
use crate::config::raw::Resource;
use crate::config::raw::{Loc, RawHost, RawTlsContext};
use crate::config::secrets::{self, Files};
use crate::config::tls::{self, CertKey, TlsParams, TlsVersion};

/// A problem at attribute `.0`.
type Keyed = (&'static str, String);

/// Where the certificate and key of a context come from: `secret` xor the file pair.
pub(crate) fn cert_paths(
    raw: &RawTlsContext,
    secrets_dir: Option<&Path>,
    files: &Files,
) -> Result<Option<(PathBuf, PathBuf, &'static str)>, Keyed> {
    let base = base_dir(&raw.loc, files);
    let pair = (&raw.cert_chain_file, &raw.private_key_file);
    match (&raw.secret, pair) {
        (Some(_), (Some(_), _) | (_, Some(_))) => Err((
            "secret",
            "use either `secret` or `cert_chain_file`/`private_key_file`, not both".into(),
        )),
        (Some(s), _) => {
            let dir =
                secret_folder(raw, s, Use::Cert, secrets_dir, files).map_err(|m| ("secret", m))?;
            Ok(Some((
                secrets::cert_file(&dir),
                secrets::key_file(&dir),
                "secret",
            )))
        }
        (None, (Some(c), Some(k))) => Ok(Some((
            secrets::resolve_file(base.as_deref(), c),
            secrets::resolve_file(base.as_deref(), k),
            "cert_chain_file",
        ))),
        (None, (Some(_), None)) => Err((
            "cert_chain_file",
            "`cert_chain_file` needs `private_key_file`".into(),
        )),
        (None, (None, Some(_))) => Err((
            "private_key_file",
            "`private_key_file` needs `cert_chain_file`".into(),
        )),
        (None, (None, None)) => Ok(None),
    }
}

/// The CA file: `ca_secret` xor `cacert_chain_file`.
pub(crate) fn ca_path(
    raw: &RawTlsContext,
    secrets_dir: Option<&Path>,
    files: &Files,
) -> Result<Option<PathBuf>, Keyed> {
    match (&raw.ca_secret, &raw.cacert_chain_file) {
        (Some(_), Some(_)) => Err((
            "ca_secret",
            "use either `ca_secret` or `cacert_chain_file`, not both".into(),
        )),
        (Some(s), None) => {
            let dir =
                secret_folder(raw, s, Use::Ca, secrets_dir, files).map_err(|m| ("ca_secret", m))?;
            Ok(Some(secrets::ca_file(&dir, files)))
        }
        (None, Some(f)) => Ok(Some(secrets::resolve_file(
            base_dir(&raw.loc, files).as_deref(),
            f,
        ))),
        (None, None) => Ok(None),
    }
}

/// What a secret is used for: a certificate with its key, or a CA bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `secret`, `tlsSecret`: `tls.crt` + `tls.key`.
    Cert,
    /// `ca_secret`: `ca.crt`, else `tls.crt`.
    Ca,
}

/// The folder of a context's secret `name`: a `kind: Secret` document of the config in the
/// context's namespace first, then `--secrets-dir`.
fn secret_folder(
    raw: &RawTlsContext,
    name: &str,
    usage: Use,
    dir: Option<&Path>,
    files: &Files,
) -> Result<PathBuf, String> {
    let namespacing = raw.secret_namespacing.unwrap_or(true);
    if let Some(k) = files.kube_secret(name, namespacing, raw.namespace.as_deref()) {
        return kube_folder(k, usage);
    }
    match dir {
        Some(d) => Ok(secrets::secret_dir(d, name, namespacing)),
        None => Err(format!(
            "secret `{name}` is not a Secret in the config and needs --secrets-dir"
        )),
    }
}

/// A Secret document's folder when its type fits the use: `kubernetes.io/tls` for a
/// certificate; for a CA also `Opaque` (`kubectl create secret generic`, as Emissary's
/// client-certificate guide makes it).
fn kube_folder(k: &secrets::KubeSecret, usage: Use) -> Result<PathBuf, String> {
    let fits = k.secret_type == secrets::TLS_TYPE || usage == Use::Ca && k.secret_type == "Opaque";
    if fits {
        Ok(k.folder.clone())
    } else {
        Err(format!(
            "Secret {} at {} has type `{}`, not {}",
            k.id,
            k.place,
            k.secret_type,
            secrets::TLS_TYPE
        ))
    }
}

/// The directory of the config file, for relative certificate paths (none for inline YAML).
fn base_dir(loc: &Loc, files: &Files) -> Option<PathBuf> {
    let f = &loc.doc.file;
    files
        .is_config_file(f)
        .then(|| f.parent().map(Path::to_path_buf))
        .flatten()
}

/// Every file the TLSContexts and Hosts of `resources` may read (the reader reads these
/// before validation); `files` needs only its config-file names here.
pub(crate) fn referenced_files(
    resources: &[Resource],
    secrets_dir: Option<&Path>,
    files: &Files,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for r in resources {
        match r {
            Resource::Context(raw) => {
                if let Ok(Some((c, k, _))) = cert_paths(raw, secrets_dir, files) {
                    out.extend([c, k]);
                }
                match &raw.ca_secret {
                    Some(s) => {
                        if let Ok(dir) = secret_folder(raw, s, Use::Ca, secrets_dir, files) {
                            out.extend([secrets::ca_crt_file(&dir), secrets::cert_file(&dir)]);
                        }
                    }
                    None => out.extend(ca_path(raw, secrets_dir, files).ok().flatten()),
                }
            }
            Resource::Host(raw) => {
                if let Ok(folder) = host_folder(raw, secrets_dir, files) {
                    out.extend([secrets::cert_file(&folder), secrets::key_file(&folder)]);
                }
            }
            Resource::Mapping(_) | Resource::Module(_) => {}
        }
    }
    out
}

/// The secret folder of a Host's `tlsSecret`: a `kind: Secret` document of the config
/// (`tlsSecret.namespace`, else the Host's) first, then `--secrets-dir`.
fn host_folder(
    raw: &RawHost,
    secrets_dir: Option<&Path>,
    files: &Files,
) -> Result<PathBuf, String> {
    let kube = match &raw.secret_namespace {
        Some(ns) => files.kube_secret_in(&raw.secret, ns),
        None => files.kube_secret(&raw.secret, true, raw.namespace.as_deref()),
    };
    if let Some(k) = kube {
        return kube_folder(k, Use::Cert);
    }
    let Some(dir) = secrets_dir else {
        return Err(format!(
            "tlsSecret `{}` is not a Secret in the config and needs --secrets-dir",
            raw.secret
        ));
    };
    Ok(match &raw.secret_namespace {
        Some(ns) => secrets::secret_dir_in(dir, &raw.secret, ns),
        None => secrets::secret_dir(dir, &raw.secret, true),
    })
}

/// `cert_required` needs a CA to check client certificates against.
pub(crate) fn check_cert_required(cert_required: bool, has_ca: bool) -> Result<(), String> {
    if cert_required && !has_ca {
        return Err("`cert_required` needs `ca_secret` or `cacert_chain_file`".into());
    }
    Ok(())
}

/// `min_tls_version` ≤ `max_tls_version`, both at least v1.2.
pub(crate) fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<(Option<TlsVersion>, Option<TlsVersion>), Keyed> {
    let lo = min
        .map(tls::parse_tls_version)
        .transpose()
        .map_err(|e| ("min_tls_version", e))?;
    let hi = max
        .map(tls::parse_tls_version)
        .transpose()
        .map_err(|e| ("max_tls_version", e))?;
    if let (Some(l), Some(h)) = (lo, hi) {
        if l > h {
            return Err((
                "min_tls_version",
                "min_tls_version is above max_tls_version".into(),
            ));
        }
    }
    Ok((lo, hi))
}

/// A context listing `hosts` terminates TLS for them, so it needs a certificate.
pub(crate) fn check_hosts_have_cert(hosts: &[String], has_cert: bool) -> Result<(), String> {
    if !hosts.is_empty() && !has_cert {
        return Err(
            "`hosts` are listed but there is no certificate (`secret` or `cert_chain_file`)".into(),
        );
    }
    Ok(())
}

/// Parses a certificate chain and its key; errors name the file at fault.
pub(crate) fn load_cert_key(cert: &Path, key: &Path, files: &Files) -> Result<CertKey, String> {
    let cert_pem = files.pem(cert)?;
    tls::parse_cert_chain(cert_pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_pem = files.pem(key)?;
    tls::parse_cert_key(cert_pem, key_pem)
        .map_err(|e| format!("{} (for {}): {e}", key.display(), cert.display()))
}

/// A warning text when the private key file `key` can be read by others, or by its group
/// unless root owns it ([`key_mode_exposed`](crate::config::secrets::key_mode_exposed));
/// `None` when it is private or its mode cannot be read.
pub(crate) fn key_permission_problem(key: &Path, files: &Files) -> Option<String> {
    let mode = files.mode(key)?;
    crate::config::secrets::key_mode_exposed(mode, files.owner(key)).then(|| {
        format!(
            "private key file {} is readable by group or others (mode {:o}); make it 0600",
            key.display(),
            mode & 0o777
        )
    })
}

/// Parses a CA bundle.
pub(crate) fn load_ca(path: &Path, files: &Files) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = files.pem(path)?;
    tls::parse_cert_chain(pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// Applies every rule to a TLSContext and parses its files; `None` when any failed.
pub(crate) fn context(
    raw: &RawTlsContext,
    secrets_dir: Option<&Path>,
    files: &Files,
) -> (Option<TlsContext>, Vec<ConfigError>) {
    let loc = &raw.loc;
    let mut errs = Vec::new();
    let mut keyed = |r: Keyed| errs.push(loc.err(&[r.0], r.1));
    let hosts = raw.hosts.clone().unwrap_or_default();
    let cert_paths = cert_paths(raw, secrets_dir, files).map_err(&mut keyed).ok();
    let ca_path = ca_path(raw, secrets_dir, files).map_err(&mut keyed).ok();
    let (min, max) = versions(
        raw.min_tls_version.as_deref(),
        raw.max_tls_version.as_deref(),
    )
    .map_err(&mut keyed)
    .unwrap_or((None, None));
    let has_cert = raw.secret.is_some() || raw.cert_chain_file.is_some();
    let has_ca = raw.ca_secret.is_some() || raw.cacert_chain_file.is_some();
    for c in raw.cipher_suites.iter().flatten() {
        if let Err(e) = tls::check_cipher_suite(c) {
            keyed(("cipher_suites", e));
        }
    }
    if let Err(e) = check_cert_required(raw.cert_required.unwrap_or(false), has_ca) {
        keyed(("cert_required", e));
    }
    if let Err(e) = check_hosts_have_cert(&hosts, has_cert) {
        keyed(("hosts", e));
    }
    let mut warnings = Vec::new();
    let cert = match cert_paths.flatten() {
        Some((c, k, key)) => load_cert_key(&c, &k, files)
            .inspect(|_| {
                let attr = if key == "secret" {
                    key
                } else {
                    "private_key_file"
                };
                warnings.extend(key_permission_problem(&k, files).map(|m| loc.warn(&[attr], m)));
            })
            .map_err(|e| keyed((key, e)))
            .ok()
            .map(Some),
        None => Some(None),
    };
    let ca = match ca_path.flatten() {
        Some(p) => {
            let key = if raw.ca_secret.is_some() {
                "ca_secret"
            } else {
                "cacert_chain_file"
            };
            load_ca(&p, files)
                .map_err(|e| keyed((key, e)))
                .ok()
                .map(Some)
        }
        None => Some(None),
    };
    let (Some(cert), Some(ca)) = (cert, ca) else {
        return (None, errs);
    };
    if !errs.is_empty() {
        return (None, errs);
    }
    let ctx = TlsContext {
        loc: loc.clone(),
        hosts,
        cert,
        ca,
        cert_required: raw.cert_required.unwrap_or(false),
        sni: raw.sni.clone(),
        params: TlsParams {
            min_version: min,
            max_version: max,
            cipher_suites: raw.cipher_suites.clone().unwrap_or_default(),
            alpn_protocols: raw.alpn_protocols.clone().unwrap_or_default(),
        },
    };
    (Some(ctx), warnings)
}

/// Applies the Host rules (hostname required) and parses its `tlsSecret`.
pub(crate) fn host(
    raw: &RawHost,
    secrets_dir: Option<&Path>,
    files: &Files,
) -> (Option<Host>, Vec<ConfigError>) {
    let loc = &raw.loc;
    let Some(hostname) = raw.hostname.clone() else {
        return (
            None,
            vec![loc.err(&[], "`hostname` is required on a Host with `tlsSecret`")],
        );
    };
    let folder = match host_folder(raw, secrets_dir, files) {
        Ok(f) => f,
        Err(m) => return (None, vec![loc.err(&["tlsSecret"], m)]),
    };
    let key = secrets::key_file(&folder);
    match load_cert_key(&secrets::cert_file(&folder), &key, files) {
        Ok(cert) => (
            Some(Host {
                loc: loc.clone(),
                hostname: hostname.to_ascii_lowercase(),
                cert,
            }),
            key_permission_problem(&key, files)
                .map(|m| loc.warn(&["tlsSecret"], m))
                .into_iter()
                .collect(),
        ),
        Err(e) => (None, vec![loc.err(&["tlsSecret"], e)]),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
