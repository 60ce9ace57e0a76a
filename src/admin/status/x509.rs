//! What the status page shows of a certificate: its subject, its names and when it expires,
//! read from the DER (RFC 5280, section 4.1) with a small reader of our own.
//!
//! Only the fields named below are read; anything unexpected gives `None` (the page then shows
//! the certificate without details), never a panic: the bytes come from user files.
//!
//! ```text
//! Certificate  SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//! TBSCertificate SEQUENCE { [0] version?, serial, signature, issuer, validity, subject,
//!                           subjectPublicKeyInfo, [1]?, [2]?, [3] extensions? }
//! ```

/// The page's view of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// The subject as `CN=a, O=b` (the attributes the page knows; others as their OID).
    pub(crate) subject: String,
    /// The subjectAltName DNS names and IP addresses.
    pub(crate) names: Vec<String>,
    /// notAfter, in seconds since the Unix epoch.
    pub(crate) not_after_unix: i64,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0]` EXPLICIT (the version) and `[3]` EXPLICIT (the extensions).
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_3: u8 = 0xa3;
/// subjectAltName: 2.5.29.17.
const SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads `der` (one certificate).
pub(crate) fn parse(der: &[u8]) -> Option<CertInfo> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&CONTEXT_0) {
        rest = tlv(rest)?.2;
    }
    // serial, signature algorithm, issuer
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (validity, after) = expect(rest, SEQUENCE)?;
    let (_, _, validity) = tlv(validity)?;
    let (tag, not_after, _) = tlv(validity)?;
    let not_after_unix = time(tag, not_after)?;
    let (subject, mut rest) = expect(after, SEQUENCE)?;
    let subject = name(subject)?;
    // subjectPublicKeyInfo, then the optional unique ids and extensions
    rest = tlv(rest)?.2;
    let mut names = Vec::new();
    while let Some((tag, content, next)) = tlv(rest) {
        if tag == CONTEXT_3 {
            names = alt_names(content)?;
        }
        rest = next;
    }
    Some(CertInfo {
        subject,
        names,
        not_after_unix,
    })
}

/// One TLV: `(tag, content, rest)`. Lengths up to four bytes (definite form only, as DER is).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    Some((tag, content, after))
}

/// A TLV that must have `tag`: `(content, rest)`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (t, content, rest) if t == tag => Some((content, rest)),
        _ => None,
    }
}

/// A Name (SEQUENCE OF SET OF AttributeTypeAndValue) as `CN=a, O=b`.
fn name(mut rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (set, next) = expect(rdns, SET)?;
        rdns = next;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (atv, next) = expect(atvs, SEQUENCE)?;
            atvs = next;
            let (oid, value) = expect(atv, OID)?;
            let (_, value, _) = tlv(value)?;
            let value = String::from_utf8_lossy(value);
            parts.push(format!("{}={value}", attribute(oid)));
        }
    }
    Some(parts.join(", "))
}

/// The short name of an attribute type (2.5.4.x), else its dotted OID.
fn attribute(oid: &[u8]) -> String {
    let short = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        _ => return dotted(oid),
    };
    short.to_string()
}

/// An OID's dotted form (`1.2.840.113549.1.9.1`).
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The subjectAltName names in `[3] { SEQUENCE OF Extension }` (empty when there is none).
fn alt_names(explicit: &[u8]) -> Option<Vec<String>> {
    let (mut exts, _) = expect(explicit, SEQUENCE)?;
    while !exts.is_empty() {
        let (ext, next) = expect(exts, SEQUENCE)?;
        exts = next;
        let (oid, mut rest) = expect(ext, OID)?;
        if oid != SAN {
            continue;
        }
        // critical BOOLEAN DEFAULT FALSE, then the OCTET STRING
        if rest.first() == Some(&0x01) {
            rest = tlv(rest)?.2;
        }
        let (value, _) = expect(rest, 0x04)?;
        let (mut general, _) = expect(value, SEQUENCE)?;
        let mut names = Vec::new();
        while !general.is_empty() {
            let (tag, content, next) = tlv(general)?;
            general = next;
            match tag {
                // dNSName [2] IA5String
                0x82 => names.push(String::from_utf8_lossy(content).into_owned()),
                // iPAddress [7] OCTET STRING
                0x87 => {
                    if let Ok(v4) = <[u8; 4]>::try_from(content) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(content) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
        return Some(names);
    }
    Some(Vec::new())
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) in
/// seconds since the Unix epoch.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        GENERALIZED_TIME if text.len() == 14 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d` (negative before it).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Count from March 1 of year 0 so that February (and its leap day) ends each year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 days lie between 0000-03-01 and 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn both_time_forms_read() {
        assert_eq!(time(UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(
            time(GENERALIZED_TIME, b"20500101000000Z"),
            Some(2_524_608_000)
        );
        assert_eq!(time(GENERALIZED_TIME, b"2050010100000Z"), None);
        assert_eq!(time(UTC_TIME, b"701301000000Z"), None);
    }

    #[test]
    fn an_rcgen_certificate_reads_back() {
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example".to_string(), "*.b.example".to_string()])
                .unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("10.1.2.3".parse().unwrap()));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "a <b> & c");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Org");
        params.not_after = rcgen::date_time_ymd(2031, 7, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = parse(cert.der()).unwrap();
        assert_eq!(info.subject, "CN=a <b> & c, O=Org");
        assert_eq!(info.names, ["a.example", "*.b.example", "10.1.2.3"]);
        assert_eq!(info.not_after_unix, days_from_civil(2031, 7, 4) * 86_400);
    }

    #[test]
    fn garbage_and_truncations_give_none() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        assert!(parse(&der).is_some());
        for n in 0..der.len() {
            assert_eq!(parse(&der[..n]), None, "truncated at {n}");
        }
        assert_eq!(parse(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(parse(b""), None);
    }
}
