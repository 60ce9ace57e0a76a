//! `TLSContext` and `Host` rules, one small function each, and parsing their secrets from the
//! [`Files`] read before validation (no I/O here: [`referenced_files`] says what to read).

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use crate::config::ConfigError;
use crate::config::model::{Host, HostSettings, TlsContext};
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
    /// `crl_secret`: `crl.pem`, else `tls.crt`.
    Crl,
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

/// A Secret document's folder when its type fits the use: `kubernetes.io/tls`, `Opaque`
/// (`kubectl create secret generic`, External Secrets, Vault) and `istio.io/key-and-cert`
/// (read under the `tls.*` names by `secrets`); any type for a CRL.
fn kube_folder(k: &secrets::KubeSecret, usage: Use) -> Result<PathBuf, String> {
    let fits = k.secret_type == secrets::TLS_TYPE
        || k.secret_type == secrets::ISTIO_TYPE
        || k.secret_type == "Opaque"
        || usage == Use::Crl;
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
                out.extend(settings_files(raw, secrets_dir, files));
            }
            Resource::Host(raw) => {
                if let Ok(folder) = host_folder(raw, secrets_dir, files) {
                    out.extend([secrets::cert_file(&folder), secrets::key_file(&folder)]);
                }
                if let Some(inline) = &raw.tls {
                    if let Some(s) = &inline.ca_secret {
                        if let Ok(dir) = secret_folder(inline, s, Use::Ca, secrets_dir, files) {
                            out.extend([secrets::ca_crt_file(&dir), secrets::cert_file(&dir)]);
                        }
                    }
                    out.extend(ca_path(inline, secrets_dir, files).ok().flatten());
                    out.extend(settings_files(inline, secrets_dir, files));
                }
            }
            Resource::Mapping(_)
            | Resource::Module(_)
            | Resource::Listener(_)
            | Resource::Gateway(_) => {}
        }
    }
    out
}

/// The CRL files `crl_secret` may name (`crl.pem`, else `tls.crt`).
fn settings_files(raw: &RawTlsContext, secrets_dir: Option<&Path>, files: &Files) -> Vec<PathBuf> {
    raw.crl_secret
        .as_deref()
        .and_then(|s| secret_folder(raw, s, Use::Crl, secrets_dir, files).ok())
        .map(|dir| vec![secrets::crl_file(&dir), secrets::cert_file(&dir)])
        .unwrap_or_default()
}

/// The certificate and key files of a Host's `tlsSecret` as [`host_folder`] finds them
/// (none when it finds no folder); used for the Gateway listeners' Secrets.
pub(crate) fn host_files(raw: &RawHost, secrets_dir: Option<&Path>, files: &Files) -> Vec<PathBuf> {
    match host_folder(raw, secrets_dir, files) {
        Ok(folder) => vec![secrets::cert_file(&folder), secrets::key_file(&folder)],
        Err(_) => Vec::new(),
    }
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

/// The allowed minimum and maximum (`None`: rustls' bounds) and a warning.
pub(crate) type Versions = (Option<TlsVersion>, Option<TlsVersion>, Option<Keyed>);

/// `min_tls_version` ≤ `max_tls_version`. A minimum below 1.2 (which Emissary accepts)
/// serves TLS 1.2 and up: the third value holds that warning. A maximum below 1.2 leaves
/// nothing rustls can serve: an error.
pub(crate) fn versions(min: Option<&str>, max: Option<&str>) -> Result<Versions, Keyed> {
    let mut warning = None;
    let lo = match min {
        Some(m) if tls::is_below_1_2(m) => {
            warning = Some((
                "min_tls_version",
                format!(
                    "min_tls_version {m}: rustls serves TLS 1.2 and 1.3 only, so TLS 1.2 and up \
                     are served (clients limited to TLS 1.0/1.1 fail the handshake)"
                ),
            ));
            None
        }
        _ => min
            .map(tls::parse_tls_version)
            .transpose()
            .map_err(|e| ("min_tls_version", e))?,
    };
    let hi = match max {
        Some(m) if tls::is_below_1_2(m) => {
            return Err((
                "max_tls_version",
                format!("max_tls_version {m} leaves no TLS version rustls can serve (1.2, 1.3)"),
            ));
        }
        _ => max
            .map(tls::parse_tls_version)
            .transpose()
            .map_err(|e| ("max_tls_version", e))?,
    };
    if let (Some(l), Some(h)) = (lo, hi) {
        if l > h {
            return Err((
                "min_tls_version",
                "min_tls_version is above max_tls_version".into(),
            ));
        }
    }
    Ok((lo, hi, warning))
}

/// TLS 1.3's suites, what is left when every listed TLS 1.2 suite was dropped.
const TLS13_SUITES: [&str; 3] = [
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_CHACHA20_POLY1305_SHA256",
];

/// `cipher_suites`: entries rustls does not offer are dropped, each with a warning (`.1`).
/// When none is left, TLS 1.2 is not offered (warning) while TLS 1.3 is allowed, else it is
/// an error (`Err`).
pub(crate) fn cipher_suites(
    listed: &[String],
    max: Option<TlsVersion>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let (kept, dropped): (Vec<&String>, Vec<&String>) = listed
        .iter()
        .partition(|c| tls::check_cipher_suite(c).is_ok());
    let mut warnings: Vec<String> = dropped
        .iter()
        .map(|c| {
            format!(
                "cipher suite {c:?} is not offered by rustls (only ECDHE AEAD suites are); dropped"
            )
        })
        .collect();
    if listed.is_empty() || !kept.is_empty() {
        return Ok((kept.into_iter().cloned().collect(), warnings));
    }
    if max == Some(TlsVersion::V1_2) {
        return Err(
            "no listed cipher suite is offered by rustls, and max_tls_version v1.2 leaves no other"
                .into(),
        );
    }
    warnings.push(
        "no listed cipher suite is offered by rustls: TLS 1.2 is not served, TLS 1.3 is (with its \
         default suites)"
            .into(),
    );
    Ok((
        TLS13_SUITES.iter().map(|s| s.to_string()).collect(),
        warnings,
    ))
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

/// Applies every rule to a TLSContext and parses its files; `None` when any failed. The
/// problems (its reading problems first) are reported as if it were used: the caller judges
/// them ([`super::usage`]).
pub(crate) fn context(
    raw: &RawTlsContext,
    secrets_dir: Option<&Path>,
    files: &Files,
) -> (Option<TlsContext>, Vec<ConfigError>) {
    let loc = &raw.loc;
    let mut errs: Vec<ConfigError> = raw
        .problems
        .iter()
        .filter(|p| p.is_error())
        .cloned()
        .collect();
    let mut warnings: Vec<ConfigError> = raw
        .problems
        .iter()
        .filter(|p| !p.is_error())
        .cloned()
        .collect();
    let mut keyed = |r: Keyed| errs.push(loc.err(&[r.0], r.1));
    let hosts = raw.hosts.clone().unwrap_or_default();
    let cert_paths = cert_paths(raw, secrets_dir, files).map_err(&mut keyed).ok();
    let ca_path = ca_path(raw, secrets_dir, files).map_err(&mut keyed).ok();
    let (min, max, suites) = protocol_settings(raw, &mut keyed, &mut warnings);
    check_requirements(raw, &hosts, &mut keyed);
    let crls = raw
        .crl_secret
        .as_deref()
        .map(|s| load_crls(raw, s, secrets_dir, files))
        .transpose()
        .map_err(|e| keyed(("crl_secret", e)))
        .ok();
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
    let (Some(cert), Some(ca), Some(crls)) = (cert, ca, crls) else {
        errs.extend(warnings);
        return (None, errs);
    };
    if !errs.is_empty() {
        errs.extend(warnings);
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
            cipher_suites: suites,
            alpn_protocols: raw.alpn_protocols.clone().unwrap_or_default(),
            ecdh_curves: raw.ecdh_curves.clone().unwrap_or_default(),
            crls: crls.unwrap_or_default(),
        },
    };
    (Some(ctx), warnings)
}

/// What one setting of a context requires of the others: `cert_required` and `crl_secret` a
/// CA, `hosts` a certificate (errors through `keyed`).
fn check_requirements(raw: &RawTlsContext, hosts: &[String], keyed: &mut impl FnMut(Keyed)) {
    let has_cert = raw.secret.is_some() || raw.cert_chain_file.is_some();
    let has_ca = raw.ca_secret.is_some() || raw.cacert_chain_file.is_some();
    if let Err(e) = check_cert_required(raw.cert_required.unwrap_or(false), has_ca) {
        keyed(("cert_required", e));
    }
    if raw.crl_secret.is_some() && !has_ca {
        keyed((
            "crl_secret",
            "`crl_secret` needs `ca_secret` or `cacert_chain_file` (the CRLs apply to client \
             certificates verified against that CA)"
                .into(),
        ));
    }
    if let Err(e) = check_hosts_have_cert(hosts, has_cert) {
        keyed(("hosts", e));
    }
}

/// Versions, cipher suites (what is left of them) and curves of a context: errors through
/// `keyed`, warnings (versions below 1.2, dropped suites) into `warnings`.
fn protocol_settings(
    raw: &RawTlsContext,
    keyed: &mut impl FnMut(Keyed),
    warnings: &mut Vec<ConfigError>,
) -> (Option<TlsVersion>, Option<TlsVersion>, Vec<String>) {
    let loc = &raw.loc;
    let (min, max) = match versions(
        raw.min_tls_version.as_deref(),
        raw.max_tls_version.as_deref(),
    ) {
        Ok((lo, hi, w)) => {
            warnings.extend(w.map(|(k, m)| loc.warn(&[k], m)));
            (lo, hi)
        }
        Err(e) => {
            keyed(e);
            (None, None)
        }
    };
    let suites = match cipher_suites(raw.cipher_suites.as_deref().unwrap_or_default(), max) {
        Ok((kept, w)) => {
            warnings.extend(w.into_iter().map(|m| loc.warn(&["cipher_suites"], m)));
            kept
        }
        Err(e) => {
            keyed(("cipher_suites", e));
            Vec::new()
        }
    };
    for c in raw.ecdh_curves.iter().flatten() {
        if let Err(e) = tls::curve(c) {
            keyed(("ecdh_curves", e));
        }
    }
    (min, max, suites)
}

/// The CRLs of `crl_secret` (PEM, in `crl.pem`, else `tls.crt`).
fn load_crls(
    raw: &RawTlsContext,
    name: &str,
    secrets_dir: Option<&Path>,
    files: &Files,
) -> Result<Vec<rustls_pki_types::CertificateRevocationListDer<'static>>, String> {
    let dir = secret_folder(raw, name, Use::Crl, secrets_dir, files)?;
    let crl = secrets::crl_file(&dir);
    let path = if files.exists(&crl) {
        crl
    } else {
        secrets::cert_file(&dir)
    };
    let pem = files.pem(&path)?;
    tls::parse_crls(pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// Applies the Host rules and parses its `tlsSecret` (a Host without `hostname` serves
/// `*`, as in Emissary). Its inline `tls:` settings are validated with it; the TLSContext
/// settings it may take are the caller's ([`super::validate`]). Problems as if used.
pub(crate) fn host(
    raw: &RawHost,
    secrets_dir: Option<&Path>,
    files: &Files,
) -> (Option<Host>, Vec<ConfigError>) {
    let loc = &raw.loc;
    let mut problems = raw.problems.clone();
    let hostname = raw
        .hostname
        .clone()
        .unwrap_or_else(|| crate::route::host::CATCH_ALL.to_string());
    let inline = raw.tls.as_deref().map(|t| context(t, secrets_dir, files));
    let settings = match inline {
        Some((Some(c), p)) => {
            problems.extend(p);
            Some(HostSettings::from_context(&c, "its `tls:` block".into()))
        }
        Some((None, p)) => {
            problems.extend(p);
            return (None, problems);
        }
        None => None,
    };
    let folder = match host_folder(raw, secrets_dir, files) {
        Ok(f) => f,
        Err(m) => {
            problems.push(loc.err(&["tlsSecret"], m));
            return (None, problems);
        }
    };
    let key = secrets::key_file(&folder);
    match load_cert_key(&secrets::cert_file(&folder), &key, files) {
        Ok(cert) => {
            problems
                .extend(key_permission_problem(&key, files).map(|m| loc.warn(&["tlsSecret"], m)));
            let ok = !problems.iter().any(ConfigError::is_error);
            let h = Host {
                loc: loc.clone(),
                hostname: hostname.to_ascii_lowercase(),
                cert,
                settings,
            };
            (ok.then_some(h), problems)
        }
        Err(e) => {
            problems.push(loc.err(&["tlsSecret"], e));
            (None, problems)
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
