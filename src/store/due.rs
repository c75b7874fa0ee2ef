//! The embedded stores' due index in memory: each channel's pending deliveries in due order, so
//! a lease takes the earliest of the channels with room and never steps over a full channel's
//! backlog (a hung destination's thousands of pending deliveries cost a lease nothing).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{Backlog, Busy};
use crate::ids::DeliveryId;

/// A due entry: (due ms, delivery).
pub type Entry = (u64, DeliveryId);

/// Pending deliveries by channel, each channel's in due order; those handed out apart.
///
/// A delivery handed out (leased, or met while the caller holds it) leaves its channel's order
/// until its outcome or its release puts it back, so a lease never steps over what is in
/// flight: it reads the channels' heads in order and takes what it returns.
#[derive(Default)]
pub struct DueIndex {
    channels: HashMap<Arc<str>, BTreeSet<Entry>>,
    /// Each channel's earliest entry that is not handed out.
    heads: BTreeSet<(Entry, Arc<str>)>,
    /// Handed out and not back yet: delivery → (due ms, channel).
    out: HashMap<DeliveryId, (u64, Arc<str>)>,
}

impl DueIndex {
    pub fn insert(&mut self, channel: &str, entry: Entry) {
        self.extend(channel, [entry]);
    }

    /// Adds entries of one channel (as its store's keys list them, at open).
    pub fn extend(&mut self, channel: &str, entries: impl IntoIterator<Item = Entry>) {
        let name = self.name(channel);
        let set = self.channels.entry(name.clone()).or_default();
        let before = set.first().copied();
        set.extend(entries);
        self.moved_head(&name, before);
    }

    /// Drops `entry` of `channel`, handed out or not (its outcome is recorded, or it is stale).
    pub fn remove(&mut self, channel: &str, entry: &Entry) {
        self.forget(&entry.1, entry.0);
        let name = self.name(channel);
        let Some(set) = self.channels.get_mut(&name) else {
            return;
        };
        let before = set.first().copied();
        set.remove(entry);
        self.moved_head(&name, before);
    }

    /// Puts back what was handed out and is neither held nor finished (`held` says which).
    pub fn put_back(&mut self, ids: impl IntoIterator<Item = DeliveryId>) {
        for id in ids {
            if let Some((ms, channel)) = self.out.remove(&id) {
                self.insert(&channel, (ms, id));
            }
        }
    }

    /// Takes `entry` of `channel` out of the order (leased outside [`DueIndex::take`]).
    pub fn hand_out(&mut self, channel: &str, entry: Entry) {
        self.remove(channel, &entry);
        let name = self.name(channel);
        self.out.insert(entry.1, (entry.0, name));
    }

    /// The shared name of `channel` (one allocation per channel, not per entry).
    fn name(&self, channel: &str) -> Arc<str> {
        self.channels
            .get_key_value(channel)
            .map_or_else(|| Arc::from(channel), |(name, _)| name.clone())
    }

    /// Forgets a delivery handed out at `due_ms` that is no longer due then (its record moved
    /// on while it waited).
    pub fn forget(&mut self, id: &DeliveryId, due_ms: u64) {
        if self.out.get(id).is_some_and(|(ms, _)| *ms == due_ms) {
            self.out.remove(id);
        }
    }

    /// Pending deliveries in all, handed out or not.
    pub fn len(&self) -> usize {
        self.out.len() + self.channels.values().map(BTreeSet::len).sum::<usize>()
    }

    /// Hands out up to `limit` entries due by `now_ms`, earliest first, with their channel:
    /// none of a channel `busy` says is full. An entry `busy` already holds is handed out
    /// without being returned.
    pub fn take(&mut self, now_ms: u64, limit: usize, busy: &Busy) -> Vec<(Entry, Arc<str>)> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((entry, channel)) = self
                .heads
                .iter()
                .take_while(|((ms, _), _)| *ms <= now_ms)
                .find(|(_, channel)| !busy.full.contains(&**channel))
                .cloned()
            else {
                break;
            };
            self.hand_out(&channel, entry);
            if !busy.held.contains(&entry.1) {
                out.push((entry, channel));
            }
        }
        out
    }

    /// The earliest due time of a delivery `busy` does not hold, of a channel with room. What
    /// was handed out and `busy` no longer holds (let go without an outcome) is put back first,
    /// so nothing stays out for good; what it holds is taken out of the order.
    pub fn next_ms(&mut self, busy: &Busy) -> Option<u64> {
        let lost: Vec<DeliveryId> = self
            .out
            .keys()
            .filter(|id| !busy.held.contains(id))
            .copied()
            .collect();
        self.put_back(lost);
        loop {
            let (entry, channel) = self
                .heads
                .iter()
                .find(|(_, channel)| !busy.full.contains(&**channel))
                .cloned()?;
            if !busy.held.contains(&entry.1) {
                return Some(entry.0);
            }
            self.hand_out(&channel, entry);
        }
    }

    /// How many are pending, how many of them due by `now_ms`, and since when.
    pub fn backlog(&self, now_ms: u64) -> Backlog {
        let until = (now_ms.saturating_add(1), DeliveryId::default());
        let out_due = self.out.values().filter(|(ms, _)| *ms <= now_ms);
        Backlog {
            pending: self.len() as u64,
            due: self
                .channels
                .values()
                .map(|set| set.range(..until).count() as u64)
                .sum::<u64>()
                + out_due.clone().count() as u64,
            oldest_due_ms: self
                .heads
                .first()
                .map(|((ms, _), _)| *ms)
                .into_iter()
                .chain(out_due.map(|(ms, _)| *ms))
                .min()
                .filter(|ms| *ms <= now_ms),
        }
    }

    /// Keeps `heads` and `channels` in step after `name`'s first entry was `before`.
    fn moved_head(&mut self, name: &Arc<str>, before: Option<Entry>) {
        let after = self.channels.get(name).and_then(|set| set.first().copied());
        if before == after {
            return;
        }
        if let Some(old) = before {
            self.heads.remove(&(old, name.clone()));
        }
        match after {
            Some(new) => {
                self.heads.insert((new, name.clone()));
            }
            None => {
                self.channels.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EventId;

    fn id(n: u8) -> DeliveryId {
        DeliveryId {
            event: EventId([n; 16]),
            index: 0,
        }
    }

    fn index(entries: &[(&str, u64, u8)]) -> DueIndex {
        let mut due = DueIndex::default();
        for (channel, ms, n) in entries {
            due.insert(channel, (*ms, id(*n)));
        }
        due
    }

    fn ids(out: Vec<(Entry, Arc<str>)>) -> Vec<(u64, String)> {
        out.into_iter()
            .map(|((ms, _), ch)| (ms, ch.to_string()))
            .collect()
    }

    #[test]
    fn leases_take_the_channels_in_due_order_up_to_the_limit() {
        let mut due = index(&[
            ("a", 5, 1),
            ("b", 1, 2),
            ("a", 2, 3),
            ("b", 9, 4),
            ("c", 3, 5),
        ]);
        assert_eq!(
            ids(due.take(100, 2, &Busy::default())),
            [(1, "b".into()), (2, "a".into())]
        );
        assert_eq!(
            ids(due.take(8, 10, &Busy::default())),
            [(3, "c".into()), (5, "a".into())],
            "what was handed out is not handed out again"
        );
        assert_eq!(due.len(), 5, "handed out is still pending");
        let backlog = due.backlog(8);
        assert_eq!((backlog.pending, backlog.due), (5, 4));
        assert_eq!(backlog.oldest_due_ms, Some(1));
    }

    #[test]
    fn full_channels_and_held_deliveries_are_left_out() {
        let mut due = index(&[("hung", 1, 1), ("hung", 2, 2), ("ok", 3, 3), ("ok", 4, 4)]);
        let busy = Busy {
            held: [id(3)].into(),
            full: ["hung".to_string()].into(),
        };
        assert_eq!(
            ids(due.take(10, 10, &busy)),
            [(4, "ok".into())],
            "3 is held already"
        );
        let holding = Busy {
            held: [id(3), id(4)].into(),
            ..busy
        };
        assert_eq!(due.next_ms(&holding), None);
        assert_eq!(due.next_ms(&Busy::default()), Some(1));
    }

    #[test]
    fn what_is_let_go_without_an_outcome_comes_back() {
        let mut due = index(&[("a", 1, 1), ("a", 2, 2), ("b", 3, 3)]);
        let taken = due.take(10, 3, &Busy::default());
        assert_eq!(taken.len(), 3);
        // 1 finished, 2 was released, 3 was dropped by its holder without a word.
        due.remove("a", &(1, id(1)));
        due.put_back([id(2)]);
        assert_eq!(
            ids(due.take(10, 10, &Busy::holding([id(3)]))),
            [(2, "a".into())]
        );
        let holding_two = Busy::holding([id(2)]);
        assert_eq!(due.next_ms(&holding_two), Some(3), "3 is back");
        assert_eq!(ids(due.take(10, 10, &holding_two)), [(3, "b".into())]);
        due.forget(&id(3), 3);
        due.remove("a", &(2, id(2)));
        assert_eq!(due.len(), 0);
        assert!(due.channels.is_empty() && due.heads.is_empty());
    }

    #[test]
    fn a_stale_entry_beside_the_real_one_is_dropped_alone() {
        let mut due = index(&[("a", 0, 1), ("a", 5, 1)]);
        assert_eq!(due.take(10, 1, &Busy::default()).len(), 1);
        due.remove("a", &(0, id(1)));
        assert_eq!(ids(due.take(10, 5, &Busy::default())), [(5, "a".into())]);
        due.remove("a", &(5, id(1)));
        assert_eq!(due.len(), 0);
    }
}
