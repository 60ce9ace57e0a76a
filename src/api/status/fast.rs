//! `/status.json` written straight into one buffer: what only a reload changes (listeners,
//! groups, upstreams, the mappings' names, certificates) is rendered once per config
//! generation into a [`Layout`]; each request splices in the numbers of a [`Dynamic`].
//!
//! The bytes are the ones `StatusSnapshot::json` writes for the same snapshot (unit tests hold
//! it to that, byte for byte), so the page's script and the schema do not know the difference.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::{ReloadView, WorkersView, certificates, listener};
use crate::actors::Snapshot;
use crate::admin::status::index::{Counts, Dynamic, StatusIndex, mapping_order};
use crate::admin::status::{CertificateView, MappingTotals};
use crate::route::RouteTable;
use crate::state::endpoints::Row;

/// Where, in the listeners' JSON, each upstream's endpoints go.
const HOLE: &[u8] = b"\"endpoints\":[]";

/// One generation's JSON pieces.
pub(crate) struct Layout {
    /// The table it was made from (a new table, a new layout).
    pub(crate) table: Arc<RouteTable>,
    /// Its places.
    pub(crate) index: Arc<StatusIndex>,
    /// The listeners as JSON with no endpoints, and where each upstream's go: the offset just
    /// after its `"endpoints":[` and the place of its set (`None`: no such set).
    listeners: Vec<u8>,
    holes: Vec<(usize, Option<u32>)>,
    /// Per mapping of the index: `{"mapping":..,"namespace":..,"port":..,"host":..,"active":`.
    prefixes: Vec<u8>,
    prefix_ends: Vec<usize>,
    /// The certificates, their days left counted from the epoch (set again per request).
    certificates: Vec<CertificateView>,
    /// The counts dead workers left, placed by the index (they change only when one dies).
    retired: Mutex<Option<Retired>>,
}

/// The dead workers' counts by name, and by place.
type Retired = (Arc<Vec<MappingTotals>>, Arc<Dynamic>);

/// The values of the snapshot's first fields (besides the table's).
pub(crate) struct Top {
    pub(crate) now_unix_ms: u64,
    pub(crate) uptime_s: u64,
    pub(crate) workers: WorkersView,
}

impl Layout {
    /// The layout of `table` (`None`: the pieces could not be told apart; never expected).
    pub(crate) fn new(table: &Arc<RouteTable>) -> Option<Layout> {
        let index = StatusIndex::new(table);
        let views: Vec<_> = table
            .listeners()
            .values()
            .map(|l| listener(l, &[]))
            .collect();
        let listeners = serde_json::to_vec(&views).ok()?;
        let places: Vec<Option<u32>> = table
            .listeners()
            .values()
            .flat_map(|l| l.groups_with_hosts())
            .flat_map(|(g, _)| g.upstreams.iter())
            .map(|u| index.set_place(&u.mapping, &u.service()))
            .collect();
        // The key `"endpoints":[]` only occurs as the upstreams' last field: in a string every
        // quote is escaped.
        let offsets: Vec<usize> = (listeners.windows(HOLE.len()).enumerate())
            .filter(|(_, w)| *w == HOLE)
            .map(|(at, _)| at + HOLE.len() - 1)
            .collect();
        if offsets.len() != places.len() {
            return None;
        }
        let mut prefixes = Vec::new();
        let mut prefix_ends = Vec::with_capacity(index.mappings.len());
        for m in &index.mappings {
            prefixes.extend_from_slice(b"{\"mapping\":");
            serde_json::to_writer(&mut prefixes, &m.name).ok()?;
            prefixes.extend_from_slice(b",\"namespace\":");
            serde_json::to_writer(&mut prefixes, &m.namespace).ok()?;
            prefixes.extend_from_slice(b",\"port\":");
            put_u64(&mut prefixes, u64::from(m.port));
            prefixes.extend_from_slice(b",\"host\":");
            serde_json::to_writer(&mut prefixes, &m.host).ok()?;
            prefixes.extend_from_slice(b",\"active\":");
            prefix_ends.push(prefixes.len());
        }
        Some(Layout {
            table: table.clone(),
            index: Arc::new(index),
            listeners,
            holes: offsets.into_iter().zip(places).collect(),
            prefixes,
            prefix_ends,
            certificates: certificates(table, 0),
            retired: Mutex::new(None),
        })
    }

    /// `retired` (the dead workers' counts by name) placed by the index: made once per list.
    pub(crate) fn retired(&self, retired: &Arc<Vec<MappingTotals>>) -> Arc<Dynamic> {
        let mut held = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, placed)) = held.as_ref().filter(|(l, _)| Arc::ptr_eq(l, retired)) {
            return placed.clone();
        }
        let mut placed = Dynamic::empty(&self.index);
        placed.add_named(&self.index, retired);
        let placed = Arc::new(placed);
        *held = Some((retired.clone(), placed.clone()));
        placed
    }

    /// `/status.json`'s body for `snap` (the table of this layout), `top` and the numbers `d`
    /// (shaped as this layout's index).
    pub(crate) fn write(&self, snap: &Snapshot, top: &Top, d: &Dynamic) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.listeners.len() * 2 + self.prefixes.len() * 2);
        b.extend_from_slice(b"{\"version\":\"");
        b.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        b.extend_from_slice(b"\",\"now_unix_ms\":");
        put_u64(&mut b, top.now_unix_ms);
        b.extend_from_slice(b",\"uptime_s\":");
        put_u64(&mut b, top.uptime_s);
        b.extend_from_slice(b",\"workers\":");
        let _ = serde_json::to_writer(&mut b, &top.workers);
        b.extend_from_slice(b",\"generation\":");
        put_u64(&mut b, snap.generation());
        b.extend_from_slice(if snap.ready {
            b",\"ready\":true,\"last_reload\":"
        } else {
            b",\"ready\":false,\"last_reload\":"
        });
        let reload = snap.last_reload.as_ref().map(ReloadView::of);
        let _ = serde_json::to_writer(&mut b, &reload);
        b.extend_from_slice(b",\"listeners\":");
        self.write_listeners(&mut b, d);
        b.extend_from_slice(b",\"mappings\":[");
        self.write_mappings(&mut b, d);
        b.extend_from_slice(b"],\"certificates\":");
        let now_unix_s = (top.now_unix_ms / 1000) as i64;
        let mut certificates = self.certificates.clone();
        for c in &mut certificates {
            c.set_now(now_unix_s);
        }
        let _ = serde_json::to_writer(&mut b, &certificates);
        b.extend_from_slice(b"}\n");
        b
    }

    fn write_listeners(&self, b: &mut Vec<u8>, d: &Dynamic) {
        let mut from = 0;
        for (at, place) in &self.holes {
            b.extend_from_slice(self.listeners.get(from..*at).unwrap_or_default());
            from = *at;
            let rows = place.map_or(&[][..], |p| d.set_rows(p as usize));
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                put_row(b, row);
            }
        }
        b.extend_from_slice(self.listeners.get(from..).unwrap_or_default());
    }

    /// The mappings counted, the index's (by place) and the others (by name) in one order.
    fn write_mappings(&self, b: &mut Vec<u8>, d: &Dynamic) {
        let mut extra = d.extra.iter().peekable();
        let mut first = true;
        let mut comma = |b: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                b.push(b',');
            }
        };
        for (place, (id, counts)) in self.index.mappings.iter().zip(&d.counts).enumerate() {
            let Some(counts) = counts else { continue };
            let key = mapping_order(id);
            while let Some(t) = extra.next_if(|t| totals_order(t) < key) {
                comma(b);
                let _ = serde_json::to_writer(&mut *b, t);
            }
            comma(b);
            let start = place
                .checked_sub(1)
                .map_or(0, |p| self.prefix_ends.get(p).copied().unwrap_or(0));
            let end = self.prefix_ends.get(place).copied().unwrap_or(start);
            b.extend_from_slice(self.prefixes.get(start..end).unwrap_or_default());
            put_counts(b, counts);
        }
        for t in extra {
            comma(b);
            let _ = serde_json::to_writer(&mut *b, t);
        }
    }
}

fn totals_order(t: &MappingTotals) -> (&str, &str, u16, &str) {
    (&t.namespace, &t.mapping, t.port, &t.host)
}

/// A mapping's numbers after its prefix: `1,"accepted":..,"ended":{..}}`.
fn put_counts(b: &mut Vec<u8>, c: &Counts) {
    put_i64(b, c.active);
    b.extend_from_slice(b",\"accepted\":");
    put_u64(b, c.accepted);
    b.extend_from_slice(b",\"bytes_client_to_upstream\":");
    put_u64(b, c.bytes_client_to_upstream);
    b.extend_from_slice(b",\"bytes_upstream_to_client\":");
    put_u64(b, c.bytes_upstream_to_client);
    b.extend_from_slice(b",\"connect_failures\":");
    put_u64(b, c.connect_failures);
    b.extend_from_slice(b",\"ended\":{");
    for (i, (label, n)) in c.ended_by_label().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        // Labels are plain lowercase words: nothing to escape.
        b.push(b'"');
        b.extend_from_slice(label.as_bytes());
        b.extend_from_slice(b"\":");
        put_u64(b, n);
    }
    b.extend_from_slice(b"}}");
}

/// One endpoint as `EndpointRow` serializes.
fn put_row(b: &mut Vec<u8>, r: &Row) {
    b.extend_from_slice(b"{\"address\":\"");
    put_addr(b, &r.addr);
    b.extend_from_slice(b"\",\"state\":\"");
    b.extend_from_slice(r.state.as_str().as_bytes());
    b.extend_from_slice(b"\",\"active\":");
    put_u64(b, r.active);
    b.extend_from_slice(b",\"connect_failures\":");
    put_u64(b, r.connect_failures);
    match r.last_check {
        None => b.extend_from_slice(b",\"last_check\":null}"),
        Some(c) => {
            b.extend_from_slice(if c.ok {
                b",\"last_check\":{\"ok\":true,\"at_unix_ms\":"
            } else {
                b",\"last_check\":{\"ok\":false,\"at_unix_ms\":"
            });
            put_u64(b, c.at_unix_ms);
            b.extend_from_slice(b"}}");
        }
    }
}

/// `ip:port` as `SocketAddr`'s `Display` spells it (IPv4 by hand: most endpoints).
fn put_addr(b: &mut Vec<u8>, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    b.push(b'.');
                }
                put_u64(b, u64::from(octet));
            }
            b.push(b':');
            put_u64(b, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(b, "{addr}");
        }
    }
}

/// `n` in decimal.
pub(crate) fn put_u64(b: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(digits.get(digits.len() - len..).unwrap_or_default());
}

/// `n` in decimal, with its sign.
pub(crate) fn put_i64(b: &mut Vec<u8>, n: i64) {
    if n < 0 {
        b.push(b'-');
    }
    put_u64(b, n.unsigned_abs());
}
