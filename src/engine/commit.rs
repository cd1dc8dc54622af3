//! Group commit of interactive decisions (issue 9). On a store that writes many decisions for
//! less than each alone (`Store::group_commit`: a single Redis node, one script call), a
//! decision is written at once, alone, while fewer than `DIRECT_WRITES` writes are in flight
//! and the writer task has nothing in hand (low load: no wait, no hand-over). Otherwise it
//! joins the decisions queued for the writer task, which writes whatever is queued in one
//! `Store::log_decisions` call, one group at a time, so groups grow with the load by
//! themselves; while the writer is busy every decision joins it, so a loaded server does not
//! keep writing alone (in Redis a decision alone costs about twice its share of a group).
//! Each decision of a group is still atomic with its own guard, and refused by the store
//! when it arrives after its own `write_by`. Campaign sends write their chunks themselves
//! (`decide_chunk`).
use super::{Engine, Error};
use crate::domain::Millis;
use crate::domain::contact::ContactGuard;
use crate::domain::decision::DecisionRecord;
use crate::store::{DecisionToWrite, DecisionWrite, Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Decisions written in one call at most: a group keeps Redis busy ~20-30 µs per decision.
const MAX_GROUP: usize = 32;

/// Decisions written alone at once, at most. Issue 9: with every write handed to the writer
/// task, 4 interactive calls in flight answered with a p50 of 0.90-1.10 ms instead of
/// 0.66-0.92 ms (the hand-over to another task and back, and the wait for the group in
/// flight).
const DIRECT_WRITES: usize = 4;

/// A decision's record, handed back with what became of its write.
type Written = (DecisionRecord, Result<DecisionWrite, StoreError>);

/// A decision waiting for its group's write.
struct Pending {
    record: DecisionRecord,
    guard: ContactGuard,
    write_by: Option<Millis>,
    done: oneshot::Sender<Written>,
}

/// The queue of decisions to write (its writer task starts with the first decision queued),
/// the decisions handed to the writer and not yet answered, and the writes made alone in
/// flight.
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: std::sync::OnceLock<mpsc::UnboundedSender<Pending>>,
    queued: Arc<AtomicUsize>,
    direct: AtomicUsize,
}

/// A write counted in `GroupCommit::direct` until it ends (or is dropped), with the count of
/// the others in flight when it started.
struct Direct<'a> {
    count: &'a AtomicUsize,
    others: usize,
}

impl<'a> Direct<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        Self { count, others: count.fetch_add(1, Ordering::Relaxed) }
    }
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Engine {
    /// Writes an interactive decision (`Store::log_decision`), with the decisions made at the
    /// same time when the store gains by it. Hands the record back with the write's outcome.
    pub(super) async fn write_decision(
        &self,
        record: DecisionRecord,
        guard: ContactGuard,
        write_by: Millis,
    ) -> Result<(DecisionRecord, DecisionWrite), Error> {
        let gc = &self.group_commit;
        let alone = self.store.group_commit().then(|| Direct::enter(&gc.direct));
        if alone.as_ref().is_none_or(|d| writes_alone(d.others, gc.queued.load(Ordering::Relaxed))) {
            let written = self.store.log_decision(&record, &guard, Some(write_by)).await?;
            return Ok((record, written));
        }
        drop(alone);
        let queue = gc.queue.get_or_init(|| {
            let (queue, pending) = mpsc::unbounded_channel();
            tokio::spawn(write_groups(self.store.clone(), pending, gc.queued.clone()));
            queue
        });
        let (done, answer) = oneshot::channel();
        gc.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(p)) = queue.send(Pending { record, guard, write_by: Some(write_by), done }) {
            // The writer is gone with the runtime it ran on: write alone.
            gc.queued.fetch_sub(1, Ordering::Relaxed);
            let written = self.store.log_decision(&p.record, &p.guard, p.write_by).await?;
            return Ok((p.record, written));
        }
        // A writer that stopped with the decision in hand may or may not have written it: an
        // error, never a fallback (which would deny a write that happened).
        let (record, written) =
            answer.await.map_err(|_| Error::Internal("the decision writer stopped during the write".into()))?;
        Ok((record, written?))
    }
}

/// Whether a decision is written alone, given the writes alone in flight and the decisions
/// in the writer's hands: only at low load, when neither is busy.
fn writes_alone(others_alone: usize, queued: usize) -> bool {
    others_alone < DIRECT_WRITES && queued == 0
}

/// The writer: takes whatever decisions are queued (up to `MAX_GROUP`), writes them in one
/// call, answers each (taking them off `queued`), and starts again; ends when the engine is
/// dropped.
async fn write_groups(store: Arc<dyn Store>, mut pending: mpsc::UnboundedReceiver<Pending>, queued: Arc<AtomicUsize>) {
    loop {
        let mut group = Vec::with_capacity(MAX_GROUP);
        let n = pending.recv_many(&mut group, MAX_GROUP).await;
        if n == 0 {
            return;
        }
        write_group(store.as_ref(), group).await;
        queued.fetch_sub(n, Ordering::Relaxed);
    }
}

/// One group: written in one call, each decision answered.
async fn write_group(store: &dyn Store, group: Vec<Pending>) {
    let writes: Vec<DecisionToWrite<'_>> =
        group.iter().map(|p| DecisionToWrite { record: &p.record, guard: &p.guard, write_by: p.write_by }).collect();
    let written = store.log_decisions(&writes).await;
    drop(writes);
    match written {
        // One answer per decision, in order (`Store::log_decisions`); a missing one drops
        // its sender, which its caller sees as an error.
        Ok(answers) => {
            for (p, w) in group.into_iter().zip(answers) {
                let _ = p.done.send((p.record, Ok(w)));
            }
        }
        Err(e) => {
            for p in group {
                let _ = p.done.send((p.record, Err(e.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_join_the_group_while_the_writer_is_busy() {
        assert!(writes_alone(0, 0));
        assert!(writes_alone(DIRECT_WRITES - 1, 0));
        assert!(!writes_alone(DIRECT_WRITES, 0), "the writes alone are bounded");
        assert!(!writes_alone(0, 1), "a decision waiting for the writer means the server is loaded");
    }
}
