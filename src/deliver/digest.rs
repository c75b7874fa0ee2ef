//! Sending a digest: the pending deliveries that share the key of the one that came due are
//! taken along (leased, and held apart from the dispatcher's own), their events rendered into
//! one message, and every one of them completed with that message's outcome.

use serde_json::json;

use super::Dispatcher;
use crate::catalog::Catalog;
use crate::channel::{ChannelDef, DeliveryError, with_note};
use crate::event::Event;
use crate::ids::DeliveryId;
use crate::message::Message;
use crate::plan::digest::{Member, render};
use crate::reason::Reason;
use crate::store::{Completion, DeliveryRecord, Leased};

/// The other pending deliveries of `leased`'s digest, leased for this send (none when it
/// belongs to no digest, its channel sends the event rather than a message, or the store
/// cannot say: then it goes alone and the others in their own time).
pub(super) async fn gather(d: &Dispatcher, catalog: &Catalog, leased: &Leased) -> Vec<Leased> {
    let Some(key) = &leased.record.digest else {
        return Vec::new();
    };
    if catalog
        .channels
        .get(&leased.record.channel)
        .is_some_and(|c| !c.channel.needs_message())
    {
        return Vec::new();
    }
    let ids: Vec<DeliveryId> = match d.store.digest_members(key).await {
        Ok(ids) => ids
            .into_iter()
            .filter(|id| *id != leased.record.id)
            .collect(),
        Err(e) => {
            tracing::debug!(delivery = %leased.record.id, error = %e,
                "digest members unreadable; sent alone");
            return Vec::new();
        }
    };
    let claimed = d.claim(&leased.record.channel, &ids);
    if claimed.is_empty() {
        return Vec::new();
    }
    let leased_now = match d.store.lease_now(&claimed).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "digest members could not be leased; sent alone");
            Vec::new()
        }
    };
    let unused: Vec<DeliveryId> = claimed
        .into_iter()
        .filter(|id| !leased_now.iter().any(|l| l.record.id == *id))
        .collect();
    d.let_go(unused);
    leased_now
}

/// The one message of a digest whose first delivery is `first` and the rest `others`.
pub(super) async fn message(
    d: &Dispatcher,
    catalog: &Catalog,
    ch: &ChannelDef,
    first: &DeliveryRecord,
    others: &[Leased],
) -> Result<Message, DeliveryError> {
    let mut records: Vec<&DeliveryRecord> = std::iter::once(first)
        .chain(others.iter().map(|l| &l.record))
        .collect();
    // Oldest first: event ids sort by the time they were received.
    records.sort_by_key(|r| r.id);
    let mut events: Vec<Event> = Vec::with_capacity(records.len());
    for r in &records {
        let stored = d
            .store
            .event(&r.id.event)
            .await
            .map_err(|e| DeliveryError::retryable(Reason::Config, e.to_string()))?;
        events.push(
            stored
                .ok_or_else(|| {
                    DeliveryError::permanent(Reason::Config, "an event of this digest is gone")
                })?
                .event,
        );
    }
    let members: Vec<Member<'_>> = records
        .iter()
        .zip(&events)
        .map(|(r, event)| Member {
            event,
            message: r.message.as_ref(),
        })
        .collect();
    let template = catalog
        .digest_of(&first.origin)
        .and_then(|def| def.template.as_deref());
    render(catalog, template, ch, &members).map_err(|e| DeliveryError::permanent(Reason::Render, e))
}

/// `c` as recorded on one delivery of a digest of `count` sent with `sent_with`: the receipt
/// says so.
pub(super) fn noted(c: &Completion, sent_with: &DeliveryId, count: usize) -> Completion {
    let note = json!({"sentWith": sent_with.to_string(), "events": count});
    let mut c = c.clone();
    c.attempt.receipt = Some(with_note(c.attempt.receipt.take(), "digest", note));
    c
}
