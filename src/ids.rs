//! Typed, time-ordered ids: `evt_…` for events, `dlv_…` for the deliveries planned from them.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An event's key in the store: 8 bytes of receive time (ms) then 8 bytes of a per-process
/// sequence that starts at a random value, so ids sort by time and never collide across restarts.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub [u8; 16]);

fn sequence() -> &'static AtomicU64 {
    static SEQ: OnceLock<AtomicU64> = OnceLock::new();
    SEQ.get_or_init(|| AtomicU64::new(rand::random::<u64>() >> 1))
}

impl EventId {
    /// A fresh id stamped with `at_ms`.
    pub fn generate(at_ms: u64) -> EventId {
        let seq = sequence().fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&at_ms.to_be_bytes());
        b[8..].copy_from_slice(&seq.to_be_bytes());
        EventId(b)
    }

    /// Receive time in ms.
    pub fn time_ms(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    /// The id from its 16 key bytes.
    pub fn parse_key(bytes: &[u8]) -> Option<EventId> {
        Some(EventId(bytes.try_into().ok()?))
    }

    /// Parses the `evt_` text form.
    pub fn parse(text: &str) -> Option<EventId> {
        let hex = text.strip_prefix("evt_")?;
        let mut b = [0u8; 16];
        hex::decode_to_slice(hex, &mut b).ok()?;
        Some(EventId(b))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evt_{}", hex::encode(self.0))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A delivery's key: its event's id and its index among that event's deliveries, so the
/// deliveries of one event are adjacent in the store.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    pub event: EventId,
    pub index: u32,
}

impl DeliveryId {
    /// Byte length of [`DeliveryId::to_bytes`].
    pub const LEN: usize = 20;

    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..16].copy_from_slice(&self.event.0);
        b[16..].copy_from_slice(&self.index.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<DeliveryId> {
        if b.len() != Self::LEN {
            return None;
        }
        let mut e = [0u8; 16];
        e.copy_from_slice(&b[..16]);
        Some(DeliveryId {
            event: EventId(e),
            index: u32::from_be_bytes(b[16..].try_into().ok()?),
        })
    }

    /// Parses the `dlv_` text form.
    pub fn parse(text: &str) -> Option<DeliveryId> {
        let hex = text.strip_prefix("dlv_")?;
        let mut b = [0u8; 20];
        hex::decode_to_slice(hex, &mut b).ok()?;
        DeliveryId::from_bytes(&b)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dlv_{}", hex::encode(self.to_bytes()))
    }
}

impl fmt::Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Both ids travel in records and APIs in their text form.
macro_rules! text_serde {
    ($ty:ty, $what:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                <$ty>::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(concat!("not ", $what, ": {:?}"), text))
                })
            }
        }
    };
}

text_serde!(EventId, "an event id");
text_serde!(DeliveryId, "a delivery id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = EventId::generate(1_700_000_000_000);
        let b = EventId::generate(1_700_000_000_001);
        assert!(a < b);
        assert_eq!(a.time_ms(), 1_700_000_000_000);
        assert_eq!(EventId::parse(&a.to_string()), Some(a));
        let d = DeliveryId { event: a, index: 7 };
        assert_eq!(DeliveryId::parse(&d.to_string()), Some(d));
        assert_eq!(DeliveryId::from_bytes(&d.to_bytes()), Some(d));
        assert_eq!(EventId::parse("evt_zz"), None);
        assert_eq!(DeliveryId::parse("evt_00"), None);
    }

    #[test]
    fn same_millisecond_ids_differ() {
        let a = EventId::generate(5);
        let b = EventId::generate(5);
        assert_ne!(a, b);
    }
}
