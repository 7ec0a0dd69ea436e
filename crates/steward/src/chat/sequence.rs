//! The order of pushes within a conversation, per server process.
//!
//! Ids within a conversation increase in commit order (the writer locks the
//! conversation before it takes ids), and each stored message names its
//! predecessor: the conversation's newest id when its batch took the lock
//! (`prev`, 0 for the first). Announcements of other processes' messages can
//! arrive in any order (each process publishes after its own commit), and a
//! process's own messages are pushed at once; the sequencer puts both back in
//! commit order for this process's sockets:
//!
//! * a message whose predecessor was pushed (or is older than anything this
//!   process tracks) is pushed, and so is every held message that followed it;
//! * a message whose predecessor has not been seen yet is held;
//! * a message held longer than the wait is *overdue*: the relay reads the
//!   missing messages from the database ([`Sequencer::overdue`],
//!   [`Sequencer::fill`]), so an announcement lost with a crashed process, or
//!   in a gap of the broker, delays its successors by the wait and loses
//!   nothing;
//! * a message at or below the newest pushed id is a late one: pushed if it was
//!   never pushed (a conversation first seen mid-way), dropped if it was.
//!
//! State is per conversation seen recently; conversations idle for long are
//! forgotten ([`Sequencer::prune`]), so memory follows activity.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Ids remembered per conversation to tell a repeat from a late message.
const RECENT: usize = 64;

/// One conversation's state.
struct Conv<P> {
    /// The newest id pushed (or assumed handled, at first sight).
    last: i64,
    recent: VecDeque<i64>,
    /// Held messages by their predecessor's id.
    held: BTreeMap<i64, Held<P>>,
    touched: Instant,
}

struct Held<P> {
    id: i64,
    pushes: Vec<P>,
    since: Instant,
}

impl<P> Conv<P> {
    fn remember(&mut self, id: i64) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
    }

    /// Pushes every held message whose predecessor is now covered.
    fn release(&mut self, out: &mut Vec<P>) {
        while let Some((&prev, _)) = self.held.first_key_value() {
            if prev > self.last {
                break;
            }
            if let Some((_, h)) = self.held.pop_first()
                && h.id > self.last
            {
                out.extend(h.pushes);
                self.last = h.id;
                self.remember(h.id);
            }
        }
    }
}

/// The per-conversation order of one process's pushes (see the module
/// documentation). `P` is what is pushed for a message.
pub(crate) struct Sequencer<P> {
    convs: HashMap<String, Conv<P>>,
}

impl<P> Default for Sequencer<P> {
    fn default() -> Self {
        Sequencer {
            convs: HashMap::new(),
        }
    }
}

impl<P> Sequencer<P> {
    /// Message `id` of `conversation`, stored after `prev`: returns what to
    /// push now, in order (this message and any it released), or nothing
    /// when it must wait for its predecessor or was pushed before.
    pub(crate) fn message(
        &mut self,
        conversation: &str,
        id: i64,
        prev: i64,
        pushes: Vec<P>,
        now: Instant,
    ) -> Vec<P> {
        let c = self
            .convs
            .entry(conversation.to_owned())
            .or_insert_with(|| Conv {
                last: prev,
                recent: VecDeque::new(),
                held: BTreeMap::new(),
                touched: now,
            });
        c.touched = now;
        if id <= c.last {
            if c.recent.contains(&id) {
                return Vec::new();
            }
            c.remember(id);
            return pushes;
        }
        if prev > c.last {
            c.held.insert(
                prev,
                Held {
                    id,
                    pushes,
                    since: now,
                },
            );
            return Vec::new();
        }
        let mut out = pushes;
        c.last = id;
        c.remember(id);
        c.release(&mut out);
        out
    }

    /// Conversations with a message held longer than `wait`: (conversation,
    /// newest pushed id, newest missing id). The messages in between are to
    /// be read from the database and given to [`Sequencer::fill`].
    pub(crate) fn overdue(&self, wait: Duration, now: Instant) -> Vec<(String, i64, i64)> {
        self.convs
            .iter()
            .filter_map(|(conv, c)| {
                let (&prev, h) = c.held.first_key_value()?;
                (now.duration_since(h.since) >= wait).then(|| (conv.clone(), c.last, prev))
            })
            .collect()
    }

    /// The messages read from the database for a gap up to `upto` (in id
    /// order): pushes those not pushed yet, then what was held behind them.
    /// Whatever the database no longer has (erased) is passed over.
    pub(crate) fn fill(
        &mut self,
        conversation: &str,
        upto: i64,
        filled: Vec<(i64, Vec<P>)>,
        now: Instant,
    ) -> Vec<P> {
        let Some(c) = self.convs.get_mut(conversation) else {
            return Vec::new();
        };
        c.touched = now;
        let mut out = Vec::new();
        for (id, pushes) in filled {
            if id > c.last && !c.recent.contains(&id) {
                out.extend(pushes);
                c.last = id;
                c.remember(id);
            }
        }
        c.last = c.last.max(upto);
        c.release(&mut out);
        out
    }

    /// Forgets everything (the sockets were closed: their clients read the
    /// history).
    pub(crate) fn clear(&mut self) {
        self.convs.clear();
    }

    /// Forgets conversations idle for `idle` with nothing held.
    pub(crate) fn prune(&mut self, idle: Duration, now: Instant) {
        self.convs
            .retain(|_, c| !c.held.is_empty() || now.duration_since(c.touched) < idle);
    }

    /// Conversations tracked.
    pub(crate) fn len(&self) -> usize {
        self.convs.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn messages_in_order_pass_straight_through() {
        let t = Instant::now();
        let mut s = Sequencer::default();
        assert_eq!(s.message("c", 10, 0, vec![10], t), [10]);
        assert_eq!(s.message("c", 12, 10, vec![12], t), [12]);
        assert_eq!(s.message("d", 11, 3, vec![11], t), [11]);
    }

    #[test]
    fn a_message_waits_for_its_predecessor_then_both_go_in_order() {
        let t = Instant::now();
        let mut s = Sequencer::default();
        assert_eq!(s.message("c", 10, 0, vec![10], t), [10]);
        // 14 and 13 arrive before 12, which follows 10.
        assert!(s.message("c", 14, 13, vec![14], t).is_empty());
        assert!(s.message("c", 13, 12, vec![13], t).is_empty());
        assert_eq!(s.message("c", 12, 10, vec![12], t), [12, 13, 14]);
        // A repeat is dropped.
        assert!(s.message("c", 13, 12, vec![13], t).is_empty());
    }

    #[test]
    fn an_announcement_that_never_comes_is_read_after_the_wait() {
        let t = Instant::now();
        let wait = Duration::from_millis(250);
        let mut s = Sequencer::default();
        assert_eq!(s.message("c", 10, 0, vec![10], t), [10]);
        assert!(s.message("c", 20, 15, vec![20], at(t, 10)).is_empty());
        assert!(s.overdue(wait, at(t, 200)).is_empty());
        assert_eq!(s.overdue(wait, at(t, 300)), [("c".to_owned(), 10, 15)]);
        // The database has 15 (and 12, never announced); 20 follows.
        let out = s.fill("c", 15, vec![(12, vec![12]), (15, vec![15])], at(t, 300));
        assert_eq!(out, [12, 15, 20]);
        assert!(s.overdue(wait, at(t, 900)).is_empty());
        // The lost announcement turning up after all is a repeat.
        assert!(s.message("c", 15, 12, vec![15], at(t, 950)).is_empty());
    }

    #[test]
    fn an_erased_predecessor_does_not_hold_its_successors_forever() {
        let t = Instant::now();
        let mut s = Sequencer::default();
        s.message("c", 10, 0, vec![10], t);
        assert!(s.message("c", 20, 15, vec![20], t).is_empty());
        assert_eq!(s.fill("c", 15, Vec::new(), at(t, 300)), [20]);
    }

    #[test]
    fn a_conversation_first_seen_mid_way_loses_nothing() {
        let t = Instant::now();
        let mut s = Sequencer::default();
        // 13 (after 12) is the first this process hears of the conversation.
        assert_eq!(s.message("c", 13, 12, vec![13], t), [13]);
        // 12 turns up late: pushed (never pushed before), not dropped.
        assert_eq!(s.message("c", 12, 9, vec![12], t), [12]);
        assert!(s.message("c", 12, 9, vec![12], t).is_empty());
    }

    #[test]
    fn idle_conversations_are_forgotten_and_held_ones_kept() {
        let t = Instant::now();
        let mut s: Sequencer<i64> = Sequencer::default();
        s.message("idle", 1, 0, vec![1], t);
        s.message("waiting", 5, 0, vec![5], t);
        s.message("waiting", 9, 7, vec![9], t);
        s.prune(Duration::from_secs(60), at(t, 120_000));
        assert_eq!(s.len(), 1);
        s.clear();
        assert_eq!(s.len(), 0);
    }
}
