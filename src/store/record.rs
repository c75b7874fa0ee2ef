//! Stored records and their versioned encoding (a version byte, then the record as JSON).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::ids::{DeliveryId, EventId};
use crate::message::{Message, Recipients};
use crate::reason::Reason;

use super::{Completion, Ending, NewDelivery, StoreError};

/// Version byte written before every record. When a record's shape changes incompatibly, bump
/// it and teach [`decode`] to read the old version.
const V1: u8 = 1;

pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(V1);
    serde_json::to_writer(&mut out, record).expect("records serialize to JSON");
    out
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&V1, body)) => {
            serde_json::from_slice(body).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!("unknown record version {v}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

/// A delivery's record, with the id its key names.
pub(crate) fn decode_delivery(id: DeliveryId, bytes: &[u8]) -> Result<DeliveryRecord, StoreError> {
    let mut rec: DeliveryRecord = decode(bytes)?;
    rec.id = id;
    Ok(rec)
}

/// A received event as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    pub event: Event,
    pub received_ms: u64,
    pub dedup_key: String,
    pub deliveries: u32,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Due now or at `next_ms` (or leased by a worker).
    Pending,
    Delivered,
    Dead,
}

/// The last error of a delivery, already classified and redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Classification (stored by its kebab-case name, so older records read back).
    pub reason: Reason,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// One planned outbound request and its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryRecord {
    #[serde(skip, default)]
    pub id: DeliveryId,
    pub receiver: String,
    pub event_type: String,
    /// The Route or Subscription that produced it.
    pub origin: String,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default)]
    pub to: Recipients,
    /// `None` until rendered (a render error leaves it empty and the delivery dead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    pub state: DeliveryState,
    /// Attempts that count against the retry budget.
    pub attempts: u32,
    /// Attempt records written so far (throttle waits included).
    pub tries: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_ms: Option<u64>,
    /// The last failed attempt (a throttle wait is not one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    /// Why it waits right now: the destination's rate limit or the vendor's throttle. Cleared by
    /// the next attempt that is not a wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ErrorInfo>,
    /// When quiet hours let it go (it was planned held until then): its retry age starts here,
    /// not at reception, so a weekend's hold does not use up `retry.maxAge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Value>,
    /// The key of the digest it belongs to: sent in one message with every pending delivery
    /// that has the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The key of the message thread it continues (`NewDelivery::thread`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

impl DeliveryRecord {
    /// A planned delivery as first stored: pending at its due time, or dead if planning failed.
    pub(crate) fn planned(id: DeliveryId, event: &Event, received_ms: u64, d: NewDelivery) -> Self {
        let dead = d.failed.is_some();
        DeliveryRecord {
            id,
            receiver: event.receiver.clone(),
            event_type: event.ty.clone(),
            origin: d.origin,
            channel: d.channel,
            template: d.template,
            to: d.to,
            message: d.message,
            state: if dead {
                DeliveryState::Dead
            } else {
                DeliveryState::Pending
            },
            attempts: 0,
            tries: 0,
            created_ms: received_ms,
            updated_ms: received_ms,
            next_ms: (!dead).then_some(d.due_ms),
            last_error: d.failed,
            held_until_ms: d.held.is_some().then_some(d.due_ms),
            waiting: d.held,
            receipt: None,
            digest: d.digest,
            thread: d.thread,
        }
    }

    /// The record once `c` is recorded against it at `now_ms`.
    pub(crate) fn after(&self, c: &Completion, now_ms: u64) -> Self {
        let mut rec = self.clone();
        rec.tries += 1;
        if c.counted {
            rec.attempts += 1;
        }
        rec.updated_ms = now_ms;
        if c.attempt.result == AttemptResult::Throttled {
            rec.waiting = c.attempt.error.clone();
        } else {
            rec.waiting = None;
            if c.attempt.error.is_some() {
                rec.last_error = c.attempt.error.clone();
            }
        }
        if c.attempt.receipt.is_some() {
            rec.receipt = c.attempt.receipt.clone();
        }
        (rec.state, rec.next_ms) = match c.next {
            Ending::Delivered => (DeliveryState::Delivered, None),
            Ending::RetryAt(at) => (DeliveryState::Pending, Some(at)),
            Ending::Dead => (DeliveryState::Dead, None),
        };
        rec
    }

    /// A dead letter made due at `now_ms` again. A replay starts a fresh retry budget:
    /// attempts and age count from now.
    pub(crate) fn replayed(&mut self, now_ms: u64) {
        self.state = DeliveryState::Pending;
        self.attempts = 0;
        self.created_ms = now_ms;
        self.updated_ms = now_ms;
        self.next_ms = Some(now_ms);
    }

    /// Pending and held back by a throttle or rate limit: waiting, not failing.
    pub fn is_waiting(&self) -> bool {
        self.state == DeliveryState::Pending && self.waiting.is_some()
    }
}

/// The message a thread's events update: what its channel needs to change it, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadRecord {
    pub channel: String,
    /// The channel's handle of the message (a Feishu `message_id`; a WeCom `response_code` and
    /// `task_id`); `None` once it is used up (a WeCom code serves one update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<Value>,
    /// The delivery that sent the message.
    pub sent_by: DeliveryId,
    /// The newest event the message shows: an older one arriving late must not bring it back.
    pub shows: EventId,
    pub updates: u32,
    /// When the handle stops working; the record is purged after it.
    pub expires_ms: u64,
}

/// What one attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptResult {
    Delivered,
    Retryable,
    Throttled,
    Permanent,
}

impl AttemptResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Retryable => "retryable",
            AttemptResult::Throttled => "throttled",
            AttemptResult::Permanent => "permanent",
        }
    }
}

/// One attempt, as stored under its delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at_ms: u64,
    pub duration_ms: u64,
    pub result: AttemptResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_a_version_byte() {
        let a = AttemptRecord {
            at_ms: 1,
            duration_ms: 2,
            result: AttemptResult::Delivered,
            error: None,
            receipt: None,
        };
        let bytes = encode(&a);
        assert_eq!(bytes[0], V1);
        let back: AttemptRecord = decode(&bytes).unwrap();
        assert_eq!(back.result, AttemptResult::Delivered);
        let mut future = bytes.clone();
        future[0] = 99;
        assert!(matches!(
            decode::<AttemptRecord>(&future),
            Err(StoreError::Corrupt(m)) if m.contains("99")
        ));
    }
}
