//! TLS 1.3 record protection (RFC 8446 §5.2–5.3) in buffers we own: a record is decrypted in
//! place where it was read and encrypted in place where it is written, with the traffic keys
//! rustls negotiated (`rustls::kernel`). rustls still owns every key: the secrets after the
//! handshake, and each new one after a KeyUpdate.
//!
//! This file knows records and keys only; the stream that reads, writes and answers KeyUpdates
//! is `tls_stream.rs`.

use aws_lc_rs::aead::{
    AES_128_GCM, AES_256_GCM, Aad, Algorithm, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce,
    UnboundKey,
};
use rustls::{AlertDescription, ConnectionTrafficSecrets};

/// Record header: type, legacy version, length.
pub(crate) const HEADER: usize = 5;
/// The AEAD tag of every TLS 1.3 cipher suite.
pub(crate) const TAG: usize = 16;
/// Largest plaintext of one record.
pub(crate) const MAX_PLAIN: usize = 16 * 1024;
/// Largest encrypted body of one record (RFC 8446 §5.2: 2^14 + 256).
pub(crate) const MAX_BODY: usize = MAX_PLAIN + 256;
/// Largest record on the wire.
pub(crate) const MAX_RECORD: usize = HEADER + MAX_BODY;
/// What a record adds to its plaintext when we seal it: header, inner type, tag.
pub(crate) const OVERHEAD: usize = HEADER + 1 + TAG;

/// Content types (RFC 8446 §5.1).
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

/// One direction's key, IV and sequence number.
pub(crate) struct Keys {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    /// Records protected with this key so far.
    pub(crate) seq: u64,
}

impl Keys {
    /// Keys from rustls's secrets for a direction, starting at sequence number `seq`.
    pub(crate) fn new(seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<Self, rustls::Error> {
        let (alg, key, iv): (&'static Algorithm, &[u8], &[u8]) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (&AES_128_GCM, key.as_ref(), iv.as_ref())
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (&AES_256_GCM, key.as_ref(), iv.as_ref())
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&CHACHA20_POLY1305, key.as_ref(), iv.as_ref())
            }
            _ => return Err(rustls::Error::General("unsupported cipher suite".into())),
        };
        let key = UnboundKey::new(alg, key)
            .map_err(|_| rustls::Error::General("bad traffic key".into()))?;
        let iv: [u8; NONCE_LEN] = iv
            .try_into()
            .map_err(|_| rustls::Error::General("bad traffic IV".into()))?;
        Ok(Keys {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// The per-record nonce: the IV with the sequence number XORed into its last 8 bytes.
    fn nonce(&self) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n.iter_mut().rev().zip(self.seq.to_le_bytes()) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }
}

/// Why a record could not be opened: the alert we owe the peer and the error it becomes.
#[derive(Debug)]
pub(crate) struct Fatal {
    pub(crate) alert: AlertDescription,
    pub(crate) error: rustls::Error,
}

impl Fatal {
    pub(crate) fn new(alert: AlertDescription, error: rustls::Error) -> Self {
        Fatal { alert, error }
    }

    fn unexpected(why: &'static str) -> Self {
        Fatal::new(
            AlertDescription::UnexpectedMessage,
            rustls::Error::General(why.into()),
        )
    }
}

/// The length on the wire of the record starting `buf`, once its header is there; an error for
/// a header no TLS 1.3 peer sends after the handshake.
pub(crate) fn record_len(buf: &[u8]) -> Result<Option<usize>, Fatal> {
    let Some(&[kind, _, _, hi, lo]) = buf.get(..HEADER) else {
        return Ok(None);
    };
    if kind != APPLICATION_DATA {
        return Err(Fatal::unexpected("unencrypted record after the handshake"));
    }
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_BODY {
        return Err(Fatal::new(
            AlertDescription::RecordOverflow,
            rustls::Error::General("record too long".into()),
        ));
    }
    if len < TAG + 1 {
        return Err(Fatal::new(
            AlertDescription::DecodeError,
            rustls::Error::General("record too short".into()),
        ));
    }
    Ok(Some(HEADER + len))
}

/// Decrypts the whole record `rec` (header included, its length checked by [`record_len`]) in
/// place; its inner content type and the length of its content, which starts at `rec[HEADER]`.
pub(crate) fn open(keys: &mut Keys, rec: &mut [u8]) -> Result<(u8, usize), Fatal> {
    let (header, body) = rec.split_at_mut(HEADER);
    let nonce = keys.nonce();
    let plain = keys
        .key
        .open_in_place(nonce, Aad::from(&*header), body)
        .map_err(|_| Fatal::new(AlertDescription::BadRecordMac, rustls::Error::DecryptError))?;
    keys.seq = keys.seq.wrapping_add(1);
    // The content type is the last non-zero byte; zeros after it are padding.
    let Some(at) = plain.iter().rposition(|&b| b != 0) else {
        return Err(Fatal::unexpected("record without a content type"));
    };
    if at > MAX_PLAIN {
        return Err(Fatal::new(
            AlertDescription::RecordOverflow,
            rustls::Error::General("record content too long".into()),
        ));
    }
    Ok((plain.get(at).copied().unwrap_or_default(), at))
}

/// Seals `content` (at most [`MAX_PLAIN`] bytes) as one record of inner type `kind` into the
/// start of `out`, which has room for `content.len() + OVERHEAD` bytes; the record's length.
pub(crate) fn seal(keys: &mut Keys, kind: u8, content: &[u8], out: &mut [u8]) -> Option<usize> {
    let body = content.len() + 1 + TAG;
    let len = u16::try_from(body).ok()?;
    let rec = out.get_mut(..HEADER + body)?;
    let (header, rest) = rec.split_at_mut(HEADER);
    let [hi, lo] = len.to_be_bytes();
    header.copy_from_slice(&[APPLICATION_DATA, 3, 3, hi, lo]);
    let (inner, tag_out) = rest.split_at_mut(content.len() + 1);
    let (text, kind_out) = inner.split_at_mut(content.len());
    text.copy_from_slice(content);
    kind_out.copy_from_slice(&[kind]);
    let nonce = keys.nonce();
    let tag = keys
        .key
        .seal_in_place_separate_tag(nonce, Aad::from(&*header), inner)
        .ok()?;
    tag_out.copy_from_slice(tag.as_ref());
    keys.seq = keys.seq.wrapping_add(1);
    Some(HEADER + body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    fn keys(seq: u64) -> Keys {
        let secrets = ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([7u8; 32]),
            iv: Iv::new([9u8; 12]),
        };
        Keys::new(seq, &secrets).unwrap()
    }

    #[test]
    fn a_sealed_record_opens_with_the_same_keys_and_sequence() {
        let mut out = vec![0; 100 + OVERHEAD];
        let n = seal(&mut keys(5), APPLICATION_DATA, &[42; 100], &mut out).unwrap();
        assert_eq!(n, 100 + OVERHEAD);
        assert_eq!(record_len(&out).unwrap(), Some(n));
        let mut rx = keys(5);
        assert_eq!(
            open(&mut rx, &mut out[..n]).unwrap(),
            (APPLICATION_DATA, 100)
        );
        assert_eq!(&out[HEADER..HEADER + 100], &[42; 100]);
        assert_eq!(rx.seq, 6);
    }

    #[test]
    fn a_wrong_sequence_or_a_flipped_bit_fails_with_bad_record_mac() {
        let mut out = vec![0; 10 + OVERHEAD];
        let n = seal(&mut keys(1), APPLICATION_DATA, b"0123456789", &mut out).unwrap();
        let mut copy = out.clone();
        let e = open(&mut keys(2), &mut copy[..n]).unwrap_err();
        assert_eq!(e.alert, AlertDescription::BadRecordMac);
        out[HEADER + 3] ^= 1;
        assert!(open(&mut keys(1), &mut out[..n]).is_err());
    }

    #[test]
    fn padding_is_stripped_and_headers_are_checked() {
        // Content "hi", type alert, then three bytes of zero padding.
        let mut out = vec![0; 20 + OVERHEAD];
        let n = seal(&mut keys(0), 0, b"hi\x15\0\0", &mut out).unwrap();
        // The inner type we sealed is 0, so the last non-zero byte is the 0x15 we put in.
        assert_eq!(open(&mut keys(0), &mut out[..n]).unwrap(), (ALERT, 2));
        assert_eq!(
            record_len(&[23, 3, 3, 0x41, 0x01]).unwrap_err().alert,
            AlertDescription::RecordOverflow
        );
        assert_eq!(
            record_len(&[22, 3, 3, 0, 40]).unwrap_err().alert,
            AlertDescription::UnexpectedMessage
        );
        assert_eq!(record_len(&[23, 3, 3]).unwrap(), None);
    }
}
