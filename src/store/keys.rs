//! Key layout of the store: one keyspace, one leading byte per record family, big-endian
//! numbers so that byte order is time order.
//!
//! | prefix | key after the prefix          | value           | query it serves                 |
//! |--------|-------------------------------|-----------------|---------------------------------|
//! | `e`    | event id (16)                 | EventRecord     | retention scan in time order    |
//! | `k`    | SHA-256 of the dedup key (32) | event id + ms   | de-duplication at ingress       |
//! | `d`    | delivery id (20)              | DeliveryRecord  | deliveries of an event (prefix) |
//! | `q`    | due ms (8) + delivery id (20) | —               | due deliveries in time order (in flight too, until their outcome) |
//! | `x`    | dead ms (8) + delivery id     | —               | dead letters                    |
//! | `a`    | delivery id + try no. (4)     | AttemptRecord   | attempts of a delivery          |
//! | `g`    | digest key (text) + delivery id (20) | —        | pending deliveries of a digest  |
//! | `t`    | thread key (text)             | ThreadRecord    | the message a thread's events update |
//! | `m`    | name (text)                   | engine-defined  | the store's own bookkeeping (`seq`: the last ingest write's number, checked against the data dir's marker) |

use sha2::{Digest, Sha256};

use crate::ids::{DeliveryId, EventId};

pub const EVENT: u8 = b'e';
pub const DEDUP: u8 = b'k';
pub const DELIVERY: u8 = b'd';
pub const DUE: u8 = b'q';
pub const DEAD: u8 = b'x';
pub const ATTEMPT: u8 = b'a';
pub const DIGEST: u8 = b'g';
pub const THREAD: u8 = b't';
pub const META: u8 = b'm';

/// A bookkeeping key.
pub fn meta(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(META);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Where the number of the last ingest write is kept.
pub fn seq() -> Vec<u8> {
    meta("seq")
}

pub fn event(id: &EventId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = EVENT;
    k[1..].copy_from_slice(&id.0);
    k
}

/// The dedup key of an event: a fixed-size hash of its (Source, `source`, `id`), so that no
/// sender-chosen length reaches the engine's key limit.
pub fn dedup(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(DEDUP);
    k.extend_from_slice(&Sha256::digest(key.as_bytes()));
    k
}

pub fn delivery(id: &DeliveryId) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[0] = DELIVERY;
    k[1..].copy_from_slice(&id.to_bytes());
    k
}

/// Prefix of every delivery of one event.
pub fn deliveries_of(id: &EventId) -> [u8; 17] {
    let mut k = event(id);
    k[0] = DELIVERY;
    k
}

/// A time-index key: `prefix`, ms, delivery id. Used for due, lease and dead indexes.
pub fn timed(prefix: u8, ms: u64, id: &DeliveryId) -> [u8; 29] {
    let mut k = [0u8; 29];
    k[0] = prefix;
    k[1..9].copy_from_slice(&ms.to_be_bytes());
    k[9..].copy_from_slice(&id.to_bytes());
    k
}

/// Splits a time-index key back into its ms and delivery id.
pub fn parse_timed(key: &[u8]) -> Option<(u64, DeliveryId)> {
    if key.len() != 29 {
        return None;
    }
    let ms = u64::from_be_bytes(key[1..9].try_into().ok()?);
    Some((ms, DeliveryId::from_bytes(&key[9..])?))
}

pub fn attempt(id: &DeliveryId, n: u32) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = ATTEMPT;
    k[1..21].copy_from_slice(&id.to_bytes());
    k[21..].copy_from_slice(&n.to_be_bytes());
    k
}

/// Prefix of every attempt of one delivery.
pub fn attempts_of(id: &DeliveryId) -> [u8; 21] {
    let mut k = delivery(id);
    k[0] = ATTEMPT;
    k
}

/// The record of thread `key` (a fixed-size hash: see `plan::thread_key`).
pub fn thread(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(THREAD);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Prefix of the pending deliveries of digest `key` (a fixed-size hash: see `plan::digest`).
pub fn digest_of(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len() + DeliveryId::LEN);
    k.push(DIGEST);
    k.extend_from_slice(key.as_bytes());
    k
}

/// A pending delivery of digest `key`.
pub fn digest(key: &str, id: &DeliveryId) -> Vec<u8> {
    let mut k = digest_of(key);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// Splits a digest key back into the digest's key and the delivery id.
pub fn parse_digest(key: &[u8]) -> Option<(String, DeliveryId)> {
    let cut = key.len().checked_sub(DeliveryId::LEN)?;
    let text = std::str::from_utf8(key.get(1..cut)?).ok()?;
    Some((text.to_string(), DeliveryId::from_bytes(&key[cut..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_by_time_and_round_trip() {
        let id = DeliveryId {
            event: EventId::generate(1),
            index: 3,
        };
        let early = timed(DUE, 100, &id);
        let late = timed(DUE, 101, &id);
        assert!(early < late);
        assert_eq!(parse_timed(&late), Some((101, id)));
        assert!(delivery(&id).starts_with(&deliveries_of(&id.event)));
        assert!(attempt(&id, 9).starts_with(&attempts_of(&id)));
        let g = digest("ab12", &id);
        assert!(g.starts_with(&digest_of("ab12")));
        assert_eq!(parse_digest(&g), Some(("ab12".to_string(), id)));
    }
}
