//! Session-ticket keys that outlive config generations and processes.
//!
//! One key ring ([`KeyRing`](super::ticket_keys::KeyRing): AES-256-GCM, a new key every 6
//! hours, the previous one still decrypts) is shared by every `ServerConfig` of the process, so a
//! ticket issued before a reload resumes after it. Its keys can also come from outside: a worker
//! process takes the Supervisor's keys ([`install`]), so a ticket issued by one worker resumes on
//! every other and on a replacement, and a hot upgrade hands them to the new binary
//! ([`adopt`]). Each config wraps the ring in a [`BoundTickets`] that ties its tickets to the
//! certificate chain and client-auth policy they were issued under: rustls compares neither on
//! resumption, so without the tag a ticket from a session without a client certificate would
//! resume on a context that now requires one, or a ticket from before a certificate change would
//! skip the new certificate.

use std::sync::{Arc, OnceLock};

use rustls::server::ProducesTickets;
use rustls_pki_types::CertificateDer;

use super::ticket_keys::{KeyRing, Mode, TicketKeys, unix_now};

/// The process-wide key ring (made on first use, or by [`install`] / [`adopt`]).
static RING: OnceLock<Arc<KeyRing>> = OnceLock::new();

/// The shared ring, made with fresh keys on first call; an error when the system RNG fails.
fn ring() -> Result<Arc<KeyRing>, String> {
    if let Some(r) = RING.get() {
        return Ok(r.clone());
    }
    let made = Arc::new(KeyRing::new(TicketKeys::generate(unix_now())?, Mode::Own)?);
    // A racing first call may have won; every caller gets the stored one.
    Ok(RING.get_or_init(|| made).clone())
}

/// Puts `keys` in the process's ring (made with them if it does not exist yet).
fn put(keys: TicketKeys, mode: Mode) -> Result<(), String> {
    if let Some(r) = RING.get() {
        return r.set(keys, mode);
    }
    let made = Arc::new(KeyRing::new(keys.clone(), mode)?);
    if RING.set(made).is_err() {
        // Made by a racing first use in between: give it the keys.
        return ring()?.set(keys, mode);
    }
    Ok(())
}

/// In a worker: use `keys` from now on (every config of the process, old and new), and never
/// rotate them here (the Supervisor sends the next ones).
pub(crate) fn install(keys: TicketKeys) -> Result<(), String> {
    put(keys, Mode::Given)
}

/// In a new binary after a hot upgrade: continue with the old binary's `keys`, rotating them
/// on their schedule.
pub(crate) fn adopt(keys: TicketKeys) -> Result<(), String> {
    put(keys, Mode::Own)
}

/// With `--session-ticket-keys`: use the file's `keys` from now on, never rotating them (the
/// file is rotated). False when the ring already had exactly these keys (a re-read of an
/// unchanged file).
pub(crate) fn use_file(keys: TicketKeys) -> Result<bool, String> {
    if let Some(r) = RING.get()
        && r.keys_at(unix_now()).same_keys(&keys)
    {
        r.set_mode(Mode::Given);
        return Ok(false);
    }
    put(keys, Mode::Given)?;
    Ok(true)
}

/// The keys this process seals with now (rotated first when due): what a Supervisor sends its
/// workers and a hot upgrade hands over.
pub(crate) fn current() -> Result<TicketKeys, String> {
    Ok(ring()?.keys_at(unix_now()))
}

/// What a ticket is bound to: the server's chain and the client-auth policy.
pub(crate) struct Binding<'a> {
    /// The served chain, leaf first.
    pub(crate) chain: &'a [CertificateDer<'static>],
    /// CA certificates client certificates are verified against, if any.
    pub(crate) client_ca: Option<&'a [CertificateDer<'static>]>,
    /// Whether a client certificate is required.
    pub(crate) client_cert_required: bool,
    /// CRLs client certificates are checked against: a ticket issued before a CRL applied
    /// must not resume past it.
    pub(crate) crls: &'a [rustls_pki_types::CertificateRevocationListDer<'static>],
}

/// The ticketer for one server config: the shared keys, tickets tagged with the config's binding.
pub(crate) fn ticketer(binding: &Binding<'_>) -> Result<Arc<dyn ProducesTickets>, String> {
    Ok(Arc::new(BoundTickets {
        keys: ring()?,
        tag: tag(binding)?,
    }))
}

/// SHA-256 over the binding, each part length-prefixed.
fn tag(b: &Binding<'_>) -> Result<Vec<u8>, String> {
    let hash = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .map(|s| s.common.hash_provider)
        .ok_or("session tickets: no SHA-256 provider")?;
    let mut h = hash.start();
    let mut part = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(b"tcpmap ticket binding v1");
    part(&[
        u8::from(b.client_cert_required),
        u8::from(b.client_ca.is_some()),
    ]);
    for cert in b.chain {
        part(cert.as_ref());
    }
    part(b"client ca");
    for cert in b.client_ca.unwrap_or_default() {
        part(cert.as_ref());
    }
    if !b.crls.is_empty() {
        part(b"crls");
        for crl in b.crls {
            part(crl.as_ref());
        }
    }
    Ok(h.finish().as_ref().to_vec())
}

/// Tickets of the shared ring whose plaintext starts with the config's tag; a ticket with
/// another tag does not decrypt (a full handshake follows).
#[derive(Debug)]
struct BoundTickets {
    keys: Arc<dyn ProducesTickets>,
    tag: Vec<u8>,
}

impl ProducesTickets for BoundTickets {
    fn enabled(&self) -> bool {
        self.keys.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.keys.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut tagged = Vec::with_capacity(self.tag.len() + plain.len());
        tagged.extend_from_slice(&self.tag);
        tagged.extend_from_slice(plain);
        self.keys.encrypt(&tagged)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let mut plain = self.keys.decrypt(cipher)?;
        // Strip the tag in place (no second buffer); another binding's ticket is ignored.
        if !plain.starts_with(&self.tag) {
            return None;
        }
        plain.drain(..self.tag.len());
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cert(b: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(b.to_vec())
    }

    #[test]
    fn same_binding_decrypts_across_ticketers_other_bindings_do_not() {
        let chain = [cert(b"leaf")];
        let ca = [cert(b"ca")];
        let crl = [rustls_pki_types::CertificateRevocationListDer::from(
            b"crl".to_vec(),
        )];
        let open = Binding {
            chain: &chain,
            client_ca: None,
            client_cert_required: false,
            crls: &[],
        };
        let a = ticketer(&open).unwrap();
        let b = ticketer(&open).unwrap();
        let t = a.encrypt(b"session").unwrap();
        assert_eq!(b.decrypt(&t).as_deref(), Some(&b"session"[..]));
        let others = [
            Binding {
                chain: &chain,
                client_ca: Some(&ca),
                client_cert_required: false,
                crls: &[],
            },
            Binding {
                chain: &chain,
                client_ca: Some(&ca),
                client_cert_required: true,
                crls: &[],
            },
            Binding {
                chain: &chain,
                client_ca: Some(&ca),
                client_cert_required: true,
                crls: &crl,
            },
            Binding {
                chain: &ca,
                client_ca: None,
                client_cert_required: false,
                crls: &[],
            },
        ];
        for other in &others {
            assert_eq!(ticketer(other).unwrap().decrypt(&t), None);
        }
    }
}
