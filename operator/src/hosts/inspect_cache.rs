//! The inspect cache of one host: inspected containers reused by `list` while its events stream vouches for them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures::stream::{BoxStream, StreamExt};

use super::{Container, ContainerState, HostEvent};

/// Inspected containers of one host, reused by `list` while an open events stream of that host vouches that
/// nothing changed them: every event naming a container drops its entry, and the whole cache is dropped when
/// the last stream ends (a broken stream may have missed anything). With no stream open nothing is reused.
#[derive(Clone, Default)]
pub(super) struct InspectCache(Arc<Mutex<CacheState>>);

#[derive(Default)]
struct CacheState {
    /// Open events streams.
    streams: usize,
    /// Bumped by every event and every stream opened or closed.
    epoch: u64,
    /// The epoch of the last stream opened or closed: an inspect begun before it is not kept.
    reset_at: u64,
    entries: HashMap<String, Entry>,
}

enum Entry {
    Inspected(Container),
    /// An event named the container at this epoch: an inspect begun before it is not kept.
    Changed(u64),
}

/// An events stream that keeps the host's [`InspectCache`] honest: each event drops the entry of its
/// container before it is passed on, and the end (or drop) of the stream drops the whole cache.
struct Watched {
    events: BoxStream<'static, HostEvent>,
    /// `None` once the stream ended.
    cache: Option<InspectCache>,
}

impl InspectCache {
    /// The cached inspect of `id`, if it may be reused and Docker's list shows it in the same state.
    pub(super) fn get(&self, id: &str, listed: Option<ContainerState>) -> Option<Container> {
        let state = self.lock();
        if state.streams == 0 {
            return None;
        }
        match state.entries.get(id) {
            Some(Entry::Inspected(cached)) if listed.is_none_or(|s| s == cached.state) => {
                Some(cached.clone())
            }
            _ => None,
        }
    }

    /// The epoch to give `put` for an inspect begun now.
    pub(super) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps an inspect begun at `epoch`, unless a stream opened or closed, or an event named the
    /// container, since.
    pub(super) fn put(&self, epoch: u64, container: &Container) {
        let mut state = self.lock();
        let changed_since =
            matches!(state.entries.get(&container.id), Some(Entry::Changed(at)) if *at > epoch);
        if state.streams > 0 && epoch >= state.reset_at && !changed_since {
            state.entries.insert(container.id.clone(), Entry::Inspected(container.clone()));
        }
    }

    /// Drops entries of containers no longer listed.
    pub(super) fn retain(&self, listed: &[String]) {
        self.lock().entries.retain(|id, _| listed.contains(id));
    }

    /// Counts `events` as an open stream of this host until it ends or is dropped; each of its events drops
    /// the entry of its container.
    pub(super) fn watch(&self, events: BoxStream<'static, HostEvent>) -> BoxStream<'static, HostEvent> {
        self.stream_opened();
        Watched { events, cache: Some(self.clone()) }.boxed()
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, id: &str) {
        let mut state = self.lock();
        state.epoch += 1;
        let epoch = state.epoch;
        state.entries.insert(id.to_string(), Entry::Changed(epoch));
    }

    fn reset(&self, streams: impl FnOnce(usize) -> usize) {
        let mut state = self.lock();
        state.streams = streams(state.streams);
        state.epoch += 1;
        state.reset_at = state.epoch;
        state.entries.clear();
    }

    fn stream_opened(&self) {
        self.reset(|n| n + 1);
    }

    fn stream_closed(&self) {
        self.reset(|n| n.saturating_sub(1));
    }
}

impl futures::Stream for Watched {
    type Item = HostEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HostEvent>> {
        let polled = self.events.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(event)) => {
                if let Some(cache) = &self.cache {
                    cache.forget(&event.container_id);
                }
            }
            Poll::Ready(None) => {
                if let Some(cache) = self.cache.take() {
                    cache.stream_closed();
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            cache.stream_closed();
        }
    }
}
