//! The session-ticket keys: a [`KeyRing`] that seals tickets with AES-256-GCM (aws-lc-rs, the
//! provider rustls already uses) under the current key and opens them under the current or the
//! previous one.
//!
//! A ticket is `version (1) | key id (8) | nonce (12) | ciphertext | tag (16)`; the first 9
//! bytes are the AEAD's associated data, the nonce is random per ticket. The key id says which
//! key sealed it, so a rotation keeps the previous key's tickets readable and a ticket of an
//! unknown key is refused without trying any key.
//!
//! The keys are values ([`TicketKeys`]) so they can move between processes: the worker pool's
//! Supervisor makes them and sends them to every worker (`workers/codec.rs`), and a hot upgrade
//! hands them to the new binary. A ring either rotates itself ([`Mode::Own`]: a new key once
//! the current one is [`ROTATION_SECS`] old, like rustls's own ticketer) or only takes keys
//! given to it ([`Mode::Given`]: a worker, whose Supervisor rotates for all). Secrets never
//! appear in `Debug` output and are wiped when dropped.

use std::sync::RwLock;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rustls::server::ProducesTickets;
use serde::{Deserialize, Serialize};

/// How long one key seals new tickets; the previous one still opens for as long again.
pub(crate) const ROTATION_SECS: u64 = 6 * 60 * 60;

/// The rotation period in use: [`ROTATION_SECS`], or `TCPMAP_TICKET_ROTATION_SECS` (at least 1)
/// when set — a test knob, so a test can watch keys rotate (read once per process).
pub(crate) fn rotation_secs() -> u64 {
    static SECS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SECS.get_or_init(|| {
        std::env::var("TCPMAP_TICKET_ROTATION_SECS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(ROTATION_SECS, |v| v.max(1))
    })
}

/// The ticket format's version byte.
const VERSION: u8 = 1;
/// Bytes of a key id.
const ID_LEN: usize = 8;
/// Bytes before the ciphertext: version, key id, nonce.
const HEADER: usize = 1 + ID_LEN + NONCE_LEN;
/// The GCM tag.
const TAG: usize = 16;

/// One key: an id carried in its tickets, the AES-256 secret, and when it started sealing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TicketKey {
    id: [u8; ID_LEN],
    secret: [u8; 32],
    /// Unix seconds.
    created: u64,
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKey")
            .field("id", &u64::from_be_bytes(self.id))
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Drop for TicketKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl TicketKey {
    /// A fresh random key that starts sealing at `now` (Unix seconds).
    fn generate(now: u64) -> Result<TicketKey, String> {
        let mut key = TicketKey {
            id: [0; ID_LEN],
            secret: [0; 32],
            created: now,
        };
        aws_lc_rs::rand::fill(&mut key.id)
            .and_then(|()| aws_lc_rs::rand::fill(&mut key.secret))
            .map_err(|_| "session tickets: the system random generator failed".to_string())?;
        Ok(key)
    }

    /// A key from a key file's 80 bytes (`ticket_file.rs`): the first 8 bytes of the 16-byte
    /// name are its id, bytes 16..48 its AES-256 secret; the last 32 (an HMAC key in the
    /// nginx/Envoy layout) are not used, GCM authenticates by itself.
    pub(crate) fn from_file_bytes(bytes: &[u8; 80], now: u64) -> TicketKey {
        let mut key = TicketKey {
            id: [0; ID_LEN],
            secret: [0; 32],
            created: now,
        };
        if let Some(id) = bytes.first_chunk::<ID_LEN>() {
            key.id = *id;
        }
        if let Some(secret) = bytes.get(16..48).and_then(|s| <[u8; 32]>::try_from(s).ok()) {
            key.secret = secret;
        }
        key
    }

    fn aead(&self) -> Result<LessSafeKey, String> {
        UnboundKey::new(&AES_256_GCM, &self.secret)
            .map(LessSafeKey::new)
            .map_err(|_| "session tickets: not an AES-256 key".to_string())
    }
}

/// The keys a ring uses: the one that seals and the one before it (still opens), and with
/// `--session-ticket-keys` the file's further lines (they open too; `ticket_file.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TicketKeys {
    current: TicketKey,
    previous: Option<TicketKey>,
    /// More keys that open (the key file's third and later lines). Defaulted and skipped when
    /// empty, so a binary without the field reads and writes the same JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    more: Vec<TicketKey>,
}

impl TicketKeys {
    /// A fresh set: one random key, created `now`.
    pub(crate) fn generate(now: u64) -> Result<TicketKeys, String> {
        Ok(TicketKeys {
            current: TicketKey::generate(now)?,
            previous: None,
            more: Vec::new(),
        })
    }

    /// The keys of a key file, in its order: the first seals, every one opens. `None` when
    /// `keys` is empty or two keys share an id (a ticket would name both).
    pub(crate) fn from_list(mut keys: Vec<TicketKey>) -> Option<TicketKeys> {
        for (i, k) in keys.iter().enumerate() {
            if keys.iter().skip(i + 1).any(|o| o.id == k.id) {
                return None;
            }
        }
        let mut rest = keys.split_off(1.min(keys.len()));
        let current = keys.pop()?;
        let more = rest.split_off(1.min(rest.len()));
        Some(TicketKeys {
            current,
            previous: rest.pop(),
            more,
        })
    }

    /// True when both sets hold the same keys in the same order, whenever they were made.
    pub(crate) fn same_keys(&self, other: &TicketKeys) -> bool {
        let ids = |k: &TicketKeys| -> Vec<([u8; ID_LEN], [u8; 32])> {
            std::iter::once(&k.current)
                .chain(k.previous.iter())
                .chain(k.more.iter())
                .map(|k| (k.id, k.secret))
                .collect()
        };
        ids(self) == ids(other)
    }

    /// How many keys open tickets (1 to the key file's lines).
    pub(crate) fn len(&self) -> usize {
        1 + usize::from(self.previous.is_some()) + self.more.len()
    }

    /// The set after one rotation at `now`: a new current key, the current one becomes the
    /// previous one, the previous one is dropped.
    pub(crate) fn rotated(&self, now: u64) -> Result<TicketKeys, String> {
        let mut next = TicketKey::generate(now)?;
        // A repeated id would make the previous key's tickets unreadable; draw again.
        while next.id == self.current.id {
            next = TicketKey::generate(now)?;
        }
        Ok(TicketKeys {
            current: next,
            previous: Some(self.current.clone()),
            more: Vec::new(),
        })
    }

    /// True when the current key has sealed for [`rotation_secs`] at `now`.
    pub(crate) fn due(&self, now: u64) -> bool {
        now >= self.current.created.saturating_add(rotation_secs())
    }

    /// Seconds from `now` until [`due`](Self::due) holds (0 when it does).
    pub(crate) fn secs_until_due(&self, now: u64) -> u64 {
        self.current
            .created
            .saturating_add(rotation_secs())
            .saturating_sub(now)
    }
}

/// Whether a ring rotates its keys itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// It makes a new key when the current one is due (one process, or a Supervisor).
    Own,
    /// It uses the keys it is given until given others (a worker).
    Given,
}

/// The keys in use and their AEAD forms.
#[derive(Debug)]
struct State {
    keys: TicketKeys,
    current: LessSafeKey,
    previous: Option<LessSafeKey>,
    more: Vec<LessSafeKey>,
    mode: Mode,
}

impl State {
    fn new(keys: TicketKeys, mode: Mode) -> Result<State, String> {
        Ok(State {
            current: keys.current.aead()?,
            previous: keys.previous.as_ref().map(TicketKey::aead).transpose()?,
            more: keys
                .more
                .iter()
                .map(TicketKey::aead)
                .collect::<Result<_, _>>()?,
            keys,
            mode,
        })
    }
}

/// A key source for rustls: seals with the current key, opens with the key its id names.
#[derive(Debug)]
pub(crate) struct KeyRing {
    state: RwLock<State>,
}

impl KeyRing {
    /// A ring over `keys`.
    pub(crate) fn new(keys: TicketKeys, mode: Mode) -> Result<KeyRing, String> {
        Ok(KeyRing {
            state: RwLock::new(State::new(keys, mode)?),
        })
    }

    /// Replaces the keys (and the mode): tickets of keys no longer in the set stop opening.
    pub(crate) fn set(&self, keys: TicketKeys, mode: Mode) -> Result<(), String> {
        let next = State::new(keys, mode)?;
        *self.write() = next;
        Ok(())
    }

    /// Sets whether the ring rotates its keys itself.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.write().mode = mode;
    }

    /// The keys in use at `now`, rotated first when the ring rotates itself and they are due.
    pub(crate) fn keys_at(&self, now: u64) -> TicketKeys {
        self.rotate_if_due(now);
        self.read().keys.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-written (it is replaced
        // whole), so a poisoned lock is still good.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn rotate_if_due(&self, now: u64) {
        {
            let s = self.read();
            if s.mode == Mode::Given || !s.keys.due(now) {
                return;
            }
        }
        let mut s = self.write();
        // Another thread may have rotated in between.
        if s.mode == Mode::Given || !s.keys.due(now) {
            return;
        }
        match s.keys.rotated(now).and_then(|k| State::new(k, Mode::Own)) {
            Ok(next) => *s = next,
            // Keep sealing with the old key rather than stop issuing tickets.
            Err(e) => tracing::warn!(error = %e, "cannot rotate the session-ticket key"),
        }
    }

    /// `plain` sealed at `now`.
    pub(crate) fn seal_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        self.rotate_if_due(now);
        let s = self.read();
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER + plain.len() + TAG);
        out.push(VERSION);
        out.extend_from_slice(&s.keys.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        // Sealed in place after the header; the header's first 9 bytes are authenticated.
        let (header, body) = out.split_at_mut_checked(HEADER)?;
        let aad = header.get(..1 + ID_LEN)?;
        let tag = s
            .current
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// What `ticket` sealed, when a key of the ring sealed it and nothing changed it since.
    pub(crate) fn open_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        self.rotate_if_due(now);
        if ticket.len() < HEADER + TAG || ticket.first() != Some(&VERSION) {
            return None;
        }
        let (header, sealed) = ticket.split_at(HEADER);
        let (aad, nonce) = header.split_at(1 + ID_LEN);
        let id = aad.get(1..)?;
        let s = self.read();
        let key = if id == s.keys.current.id {
            &s.current
        } else {
            match (&s.keys.previous, &s.previous) {
                (Some(k), Some(aead)) if id == k.id => aead,
                _ => {
                    let at = s.keys.more.iter().position(|k| k.id == id)?;
                    s.more.get(at)?
                }
            }
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain_len = key
            .open_in_place(nonce, Aad::from(aad), &mut body)
            .ok()?
            .len();
        body.truncate(plain_len);
        Some(body)
    }
}

/// Unix seconds now (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ProducesTickets for KeyRing {
    fn enabled(&self) -> bool {
        true
    }

    /// The ticket lifetime hint: a key seals for [`rotation_secs`] and opens for as long
    /// again.
    fn lifetime(&self) -> u32 {
        u32::try_from(2 * rotation_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, unix_now())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_800_000_000;

    fn ring(mode: Mode) -> KeyRing {
        KeyRing::new(TicketKeys::generate(T0).unwrap(), mode).unwrap()
    }

    #[test]
    fn a_ticket_round_trips_and_each_seal_uses_a_fresh_nonce() {
        let r = ring(Mode::Own);
        let a = r.seal_at(b"session state", T0).unwrap();
        let b = r.seal_at(b"session state", T0).unwrap();
        assert_ne!(a, b, "same plaintext, same key: the nonce must differ");
        assert_eq!(a.len(), HEADER + b"session state".len() + TAG);
        assert_eq!(r.open_at(&a, T0).as_deref(), Some(&b"session state"[..]));
        assert_eq!(r.open_at(&b, T0).as_deref(), Some(&b"session state"[..]));
        // An empty plaintext is a valid ticket too.
        let e = r.seal_at(b"", T0).unwrap();
        assert_eq!(r.open_at(&e, T0).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn any_changed_byte_or_a_cut_makes_the_ticket_unreadable() {
        let r = ring(Mode::Own);
        let t = r.seal_at(b"resumption secret", T0).unwrap();
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x01;
            assert_eq!(r.open_at(&bad, T0), None, "byte {i} flipped");
        }
        for cut in 0..t.len() {
            assert_eq!(r.open_at(&t[..cut], T0), None, "cut at {cut}");
        }
        let mut longer = t.clone();
        longer.push(0);
        assert_eq!(r.open_at(&longer, T0), None);
    }

    #[test]
    fn another_secret_under_the_same_id_does_not_open() {
        let a = ring(Mode::Given);
        let mut keys = a.keys_at(T0);
        keys.current.secret[0] ^= 0xff;
        let b = KeyRing::new(keys, Mode::Given).unwrap();
        let t = a.seal_at(b"x", T0).unwrap();
        assert_eq!(b.open_at(&t, T0), None);
        // And an independent ring (other id, other secret) neither.
        assert_eq!(ring(Mode::Given).open_at(&t, T0), None);
    }

    #[test]
    fn rings_given_the_same_keys_open_each_others_tickets() {
        let keys = TicketKeys::generate(T0).unwrap();
        let a = KeyRing::new(keys.clone(), Mode::Given).unwrap();
        let b = KeyRing::new(keys, Mode::Given).unwrap();
        let t = a.seal_at(b"worker a", T0).unwrap();
        assert_eq!(b.open_at(&t, T0).as_deref(), Some(&b"worker a"[..]));
    }

    #[test]
    fn after_a_rotation_the_old_key_opens_and_after_two_it_does_not() {
        let r = ring(Mode::Given);
        let k0 = r.keys_at(T0);
        let old = r.seal_at(b"old", T0).unwrap();
        let k1 = k0.rotated(T0 + 1).unwrap();
        r.set(k1.clone(), Mode::Given).unwrap();
        let new = r.seal_at(b"new", T0 + 1).unwrap();
        assert_ne!(old[1..1 + ID_LEN], new[1..1 + ID_LEN], "new key id");
        assert_eq!(r.open_at(&old, T0 + 1).as_deref(), Some(&b"old"[..]));
        assert_eq!(r.open_at(&new, T0 + 1).as_deref(), Some(&b"new"[..]));
        r.set(k1.rotated(T0 + 2).unwrap(), Mode::Given).unwrap();
        assert_eq!(r.open_at(&old, T0 + 2), None, "two rotations ago");
        assert_eq!(r.open_at(&new, T0 + 2).as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn a_ticket_of_an_unknown_key_id_is_refused() {
        let r = ring(Mode::Own);
        let mut t = r.seal_at(b"x", T0).unwrap();
        // Another id with the right secret: refused by id, before any decryption.
        t[1] ^= 0x80;
        assert_eq!(r.open_at(&t, T0), None);
        let mut v = r.seal_at(b"x", T0).unwrap();
        v[0] = VERSION + 1;
        assert_eq!(r.open_at(&v, T0), None, "unknown format version");
    }

    #[test]
    fn an_own_ring_rotates_when_due_and_a_given_one_waits_to_be_told() {
        let own = ring(Mode::Own);
        let given = KeyRing::new(own.keys_at(T0), Mode::Given).unwrap();
        let t = own.seal_at(b"x", T0).unwrap();
        let before = own.keys_at(T0 + rotation_secs() - 1);
        assert!(!before.due(T0 + rotation_secs() - 1));
        assert_eq!(before.secs_until_due(T0 + rotation_secs() - 1), 1);
        let after = own.keys_at(T0 + rotation_secs());
        assert_ne!(after.current, before.current, "rotated when due");
        assert_eq!(after.previous.as_ref(), Some(&before.current));
        assert_eq!(after.secs_until_due(T0 + rotation_secs()), rotation_secs());
        assert_eq!(
            own.open_at(&t, T0 + rotation_secs()).as_deref(),
            Some(&b"x"[..])
        );
        // Twelve hours on (two rotations), the first ticket is gone.
        assert_eq!(own.open_at(&t, T0 + 2 * rotation_secs()), None);
        // A given ring never rotates on its own.
        let far = T0 + 10 * rotation_secs();
        assert_eq!(given.keys_at(far).current, before.current);
        assert_eq!(given.open_at(&t, far).as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let keys = TicketKeys::generate(T0).unwrap();
        let shown = format!(
            "{keys:?} {:?}",
            KeyRing::new(keys.clone(), Mode::Own).unwrap()
        );
        let hex: String = keys
            .current
            .secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dec = format!("{:?}", keys.current.secret);
        assert!(
            !shown.contains(&hex) && !shown.contains(&dec[1..dec.len() - 1]),
            "{shown}"
        );
        assert!(shown.contains("TicketKey"), "{shown}");
    }

    #[test]
    fn keys_survive_the_control_channel_encoding() {
        let keys = TicketKeys::generate(T0).unwrap().rotated(T0 + 5).unwrap();
        let json = serde_json::to_vec(&keys).unwrap();
        let back: TicketKeys = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, keys);
        let a = KeyRing::new(keys, Mode::Given).unwrap();
        let b = KeyRing::new(back, Mode::Given).unwrap();
        assert_eq!(
            b.open_at(&a.seal_at(b"y", T0).unwrap(), T0).as_deref(),
            Some(&b"y"[..])
        );
    }

    proptest! {
        #[test]
        fn opening_any_bytes_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let r = ring(Mode::Own);
            prop_assert_eq!(r.open_at(&bytes, T0), None);
        }
    }
}
