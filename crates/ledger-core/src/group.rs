//! Group commit: concurrent appends of one process queue for a committer, which writes
//! whatever has queued up as one group (one database transaction, as few statements as the
//! backend manages) while the next group queues. Each append still gets its own answer.
//!
//! The committer is runtime-agnostic: [`Committer::start`] returns its lanes as futures for
//! the backend to spawn. Streams are spread over lanes by name, so one stream's appends are
//! written by one lane, in the order they queued.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::channel::{mpsc, oneshot};
use futures::stream::{FusedStream, FuturesUnordered};
use futures::{SinkExt, StreamExt};

use crate::{AppendResult, BoxFuture, StoreError, StreamName};

/// How a backend writes appends, alone or as a group.
pub trait GroupWriter: Send + Sync + 'static {
    /// One queued append, as the backend prepared it before queueing.
    type Request: Send + 'static;

    /// The stream `request` appends to.
    fn stream(request: &Self::Request) -> &StreamName;

    /// The number of events `request` carries.
    fn events(request: &Self::Request) -> usize;

    /// Whether a group may hold only one append per stream (later ones wait for the next
    /// group, in order).
    const ONE_PER_STREAM: bool;

    /// Writes one append that queued alone: the backend's ordinary path.
    fn write_one(&self, request: Self::Request) -> BoxFuture<'_, Result<AppendResult, StoreError>>;

    /// Writes a group of at least two appends and answers each, in the group's order: an
    /// append refused inside the group fails alone, the others commit.
    fn write_group(
        &self,
        group: Vec<Self::Request>,
    ) -> BoxFuture<'_, Vec<Result<AppendResult, StoreError>>>;
}

/// How large a group may grow and how many appends may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupLimits {
    /// Lanes (committers, each with its own queue); a stream always goes to the same one.
    pub lanes: usize,
    /// Groups one lane writes at once (a stream is in at most one of them).
    pub in_flight: usize,
    /// Most appends in one group.
    pub max_appends: usize,
    /// Most events in one group (an append larger than this goes alone).
    pub max_events: usize,
    /// Appends that may wait in one lane's queue before appenders wait to queue.
    pub queue: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            lanes: 1,
            in_flight: 2,
            max_appends: 256,
            max_events: 2_000,
            queue: 4_096,
        }
    }
}

/// An append waiting for its group, with where its answer goes.
struct Pending<R> {
    request: R,
    answer: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// Queues appends for the lanes that write them; clones share the lanes.
pub struct Committer<R> {
    lanes: Arc<[mpsc::Sender<Pending<R>>]>,
    /// Appends queued or being written, by a lane or alone.
    active: Arc<AtomicUsize>,
}

/// The right to write one append alone, past the lanes, while nothing else is queued or being
/// written; others queue meanwhile. Released when dropped.
pub struct Alone(Arc<AtomicUsize>);

impl Drop for Alone {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<R> Clone for Committer<R> {
    fn clone(&self) -> Self {
        Self {
            lanes: self.lanes.clone(),
            active: self.active.clone(),
        }
    }
}

/// A lane's work: the future the backend spawns. It ends once every [`Committer`] clone is
/// dropped and the queue is empty.
pub type Lane = BoxFuture<'static, ()>;

impl<R: Send + 'static> Committer<R> {
    /// A committer writing through `writer`, and its lanes for the caller to spawn.
    pub fn start<W>(writer: Arc<W>, limits: GroupLimits) -> (Self, Vec<Lane>)
    where
        W: GroupWriter<Request = R>,
    {
        let active = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        let mut lanes = Vec::new();
        for _ in 0..limits.lanes.max(1) {
            let (tx, rx) = mpsc::channel(limits.queue.max(1));
            senders.push(tx);
            let lane = run_lane(writer.clone(), rx, limits, active.clone());
            lanes.push(Box::pin(lane) as Lane);
        }
        let committer = Self {
            lanes: senders.into(),
            active,
        };
        (committer, lanes)
    }

    /// When nothing is queued or being written, the right to write one append alone at once
    /// (the backend's single-append path, without a lane's round trip); `None` otherwise.
    pub fn alone(&self) -> Option<Alone> {
        self.active
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Alone(self.active.clone()))
    }

    /// Queues `request` on the lane of `stream` and waits for its answer, which comes once
    /// its group has committed (or failed). The append happens even if the caller stops
    /// waiting.
    pub fn append(
        &self,
        stream: &StreamName,
        request: R,
    ) -> impl Future<Output = Result<AppendResult, StoreError>> + Send + 'static + use<R> {
        let mut lane = self.lanes[lane_of(stream, self.lanes.len())].clone();
        let active = self.active.clone();
        async move {
            let (answer, answered) = oneshot::channel();
            // Counted until its lane has written it.
            active.fetch_add(1, Ordering::AcqRel);
            lane.send(Pending { request, answer }).await.map_err(|e| {
                active.fetch_sub(1, Ordering::AcqRel);
                StoreError::unavailable_with("the store's committer has stopped", e)
            })?;
            answered.await.map_err(|e| {
                StoreError::unavailable_with("the store's committer stopped midway", e)
            })?
        }
    }
}

/// The lane `stream` belongs to.
fn lane_of(stream: &StreamName, lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    stream.as_str().hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

/// Takes groups off one lane's queue and writes them, up to `in_flight` at once (never two
/// with the same stream), until the queue closes.
async fn run_lane<W: GroupWriter>(
    writer: Arc<W>,
    mut queue: mpsc::Receiver<Pending<W::Request>>,
    limits: GroupLimits,
    active: Arc<AtomicUsize>,
) {
    let in_flight = limits.in_flight.max(1);
    let mut waiting: VecDeque<Pending<W::Request>> = VecDeque::new();
    let mut running = FuturesUnordered::new();
    let mut busy: HashSet<StreamName> = HashSet::new();
    loop {
        if running.len() < in_flight {
            let group = gather::<W>(&mut waiting, &mut queue, &busy, limits);
            if !group.is_empty() {
                let streams: Vec<StreamName> = group
                    .iter()
                    .map(|p| W::stream(&p.request).clone())
                    .collect();
                busy.extend(streams.iter().cloned());
                let (writer, active) = (writer.clone(), active.clone());
                running.push(async move {
                    let n = group.len();
                    write(&*writer, group).await;
                    active.fetch_sub(n, Ordering::AcqRel);
                    streams
                });
                continue;
            }
        }
        // Nothing more can start now: wait for a group to end or an append to arrive.
        if running.is_empty() {
            match queue.next().await {
                Some(next) => waiting.push_back(next),
                None if waiting.is_empty() => return,
                None => {}
            }
        } else if running.len() < in_flight && !queue.is_terminated() {
            futures::select! {
                ended = running.select_next_some() => {
                    for stream in ended {
                        busy.remove(&stream);
                    }
                }
                next = queue.next() => waiting.extend(next),
            }
        } else if let Some(ended) = running.next().await {
            for stream in ended {
                busy.remove(&stream);
            }
        }
    }
}

/// A group of the appends that waited, then whatever has queued, without waiting for more.
/// Appends that do not fit (a stream already in the group or in a group being written, too
/// many events) wait for a later group, in order. Empty when nothing can start.
fn gather<W: GroupWriter>(
    waiting: &mut VecDeque<Pending<W::Request>>,
    queue: &mut mpsc::Receiver<Pending<W::Request>>,
    busy: &HashSet<StreamName>,
    limits: GroupLimits,
) -> Vec<Pending<W::Request>> {
    let mut events = 0;
    // Streams an append may not join the group for: in a running group, already in this one
    // (one per stream), or behind an append of theirs that had to wait.
    let mut held: HashSet<StreamName> = HashSet::new();
    let mut group = Vec::new();
    let mut still_waiting = VecDeque::new();
    // Looks at a bounded number of candidates, so a long queue of one stream's appends does
    // not make every group scan it.
    let mut budget = limits.max_appends.saturating_mul(4);
    while group.len() < limits.max_appends && budget > 0 && events < limits.max_events {
        budget -= 1;
        let next = match waiting.pop_front() {
            Some(next) => next,
            None => match queue.try_recv() {
                Ok(next) => next,
                // Empty (or closed): write what there is.
                _ => break,
            },
        };
        let size = W::events(&next.request);
        let stream = W::stream(&next.request);
        let fits = group.is_empty() || events + size <= limits.max_events;
        if busy.contains(stream) || held.contains(stream) || !fits {
            // Later appends of this stream must not overtake this one.
            held.insert(stream.clone());
            still_waiting.push_back(next);
            continue;
        }
        if W::ONE_PER_STREAM {
            held.insert(stream.clone());
        }
        events += size;
        group.push(next);
    }
    still_waiting.append(waiting);
    *waiting = still_waiting;
    group
}

/// Writes one group and answers each append in it.
async fn write<W: GroupWriter>(writer: &W, group: Vec<Pending<W::Request>>) {
    let (requests, answers): (Vec<_>, Vec<_>) =
        group.into_iter().map(|p| (p.request, p.answer)).unzip();
    let results = if requests.len() == 1 {
        let one = requests.into_iter().next().expect("a group is not empty");
        vec![writer.write_one(one).await]
    } else {
        let n = requests.len();
        let results = writer.write_group(requests).await;
        debug_assert_eq!(results.len(), n, "a group answers every append");
        results
    };
    for (answer, result) in answers.into_iter().zip(results) {
        // A caller that stopped waiting does not need its answer.
        let _ = answer.send(result);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{Position, Seq};

    /// Records each group's streams and answers every append with its index.
    struct Recorder {
        groups: Mutex<Vec<Vec<String>>>,
    }

    impl GroupWriter for Recorder {
        type Request = (StreamName, usize);

        fn stream(request: &Self::Request) -> &StreamName {
            &request.0
        }

        fn events(request: &Self::Request) -> usize {
            request.1
        }

        const ONE_PER_STREAM: bool = true;

        fn write_one(
            &self,
            request: Self::Request,
        ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
            Box::pin(async move {
                self.groups
                    .lock()
                    .unwrap()
                    .push(vec![request.0.as_str().to_string()]);
                Ok(result(&request.0))
            })
        }

        fn write_group(
            &self,
            group: Vec<Self::Request>,
        ) -> BoxFuture<'_, Vec<Result<AppendResult, StoreError>>> {
            Box::pin(async move {
                self.groups
                    .lock()
                    .unwrap()
                    .push(group.iter().map(|r| r.0.as_str().to_string()).collect());
                group.iter().map(|r| Ok(result(&r.0))).collect()
            })
        }
    }

    fn result(stream: &StreamName) -> AppendResult {
        AppendResult {
            stream: stream.clone(),
            first_seq: Seq(1),
            last_seq: Seq(1),
            position: Position(1),
            replayed: false,
        }
    }

    fn name(s: &str) -> StreamName {
        StreamName::parse(s).unwrap()
    }

    /// Where a test append's answer arrives.
    type Answer = oneshot::Receiver<Result<AppendResult, StoreError>>;

    fn pending(stream: &str, events: usize) -> (Pending<(StreamName, usize)>, Answer) {
        let (answer, rx) = oneshot::channel();
        let request = (name(stream), events);
        (Pending { request, answer }, rx)
    }

    fn limits() -> GroupLimits {
        GroupLimits {
            lanes: 1,
            in_flight: 2,
            max_appends: 3,
            max_events: 10,
            queue: 16,
        }
    }

    fn streams_of(group: &[Pending<(StreamName, usize)>]) -> Vec<&str> {
        group.iter().map(|p| p.request.0.as_str()).collect()
    }

    #[test]
    fn a_group_takes_what_queued_one_per_stream_in_order() {
        let (mut tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        for s in ["a-1", "a-1", "b-1", "c-1", "d-1"] {
            let (p, a) = pending(s, 1);
            tx.try_send(p).unwrap();
            answers.push(a);
        }
        let mut waiting = VecDeque::new();
        let group = gather::<Recorder>(&mut waiting, &mut rx, &HashSet::new(), limits());
        assert_eq!(streams_of(&group), ["a-1", "b-1", "c-1"]);
        // The second a-1 waits, ahead of what is still queued.
        let waiting: Vec<&str> = waiting.iter().map(|p| p.request.0.as_str()).collect();
        assert_eq!(waiting, ["a-1"]);
    }

    #[test]
    fn an_append_that_does_not_fit_keeps_its_streams_order() {
        let (mut tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        for (s, n) in [("a-1", 6), ("b-1", 6), ("b-1", 1), ("c-1", 1)] {
            let (p, a) = pending(s, n);
            tx.try_send(p).unwrap();
            answers.push(a);
        }
        let mut waiting = VecDeque::new();
        let group = gather::<Recorder>(&mut waiting, &mut rx, &HashSet::new(), limits());
        // b-1 (6 events) does not fit, so the later b-1 may not overtake it.
        assert_eq!(streams_of(&group), ["a-1", "c-1"]);
        let waiting: Vec<(&str, usize)> = waiting
            .iter()
            .map(|p| (p.request.0.as_str(), p.request.1))
            .collect();
        assert_eq!(waiting, [("b-1", 6), ("b-1", 1)]);
    }

    #[test]
    fn a_lone_append_is_written_alone_and_everyone_is_answered() {
        let recorder = Arc::new(Recorder {
            groups: Mutex::new(Vec::new()),
        });
        let (committer, lanes) = Committer::start(recorder.clone(), limits());
        let lane = lanes.into_iter().next().unwrap();
        futures::executor::block_on(async {
            let run = async {
                let one = committer.append(&name("a-1"), (name("a-1"), 1)).await;
                assert!(one.is_ok());
                let many = futures::future::join_all(
                    ["a-1", "b-1", "a-1", "c-1"].map(|s| committer.append(&name(s), (name(s), 1))),
                )
                .await;
                assert!(many.iter().all(Result::is_ok));
                drop(committer);
            };
            futures::join!(run, lane);
        });
        let groups = recorder.groups.lock().unwrap().clone();
        assert_eq!(groups[0], ["a-1"]);
        let written: usize = groups.iter().map(Vec::len).sum();
        assert_eq!(written, 5);
        for group in &groups {
            let unique: HashSet<&String> = group.iter().collect();
            assert_eq!(
                unique.len(),
                group.len(),
                "one append per stream: {group:?}"
            );
        }
    }

    #[test]
    fn a_stream_being_written_waits_with_everything_behind_it() {
        let (mut tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        for s in ["a-1", "b-1", "a-1", "c-1"] {
            let (p, a) = pending(s, 1);
            tx.try_send(p).unwrap();
            answers.push(a);
        }
        let busy: HashSet<StreamName> = [name("a-1")].into();
        let mut waiting = VecDeque::new();
        let group = gather::<Recorder>(&mut waiting, &mut rx, &busy, limits());
        assert_eq!(streams_of(&group), ["b-1", "c-1"]);
        let waiting: Vec<&str> = waiting.iter().map(|p| p.request.0.as_str()).collect();
        assert_eq!(waiting, ["a-1", "a-1"]);
    }

    #[test]
    fn a_large_append_goes_alone() {
        let (mut tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        for (s, n) in [("a-1", 50), ("b-1", 1)] {
            let (p, a) = pending(s, n);
            tx.try_send(p).unwrap();
            answers.push(a);
        }
        let mut waiting = VecDeque::new();
        let group = gather::<Recorder>(&mut waiting, &mut rx, &HashSet::new(), limits());
        assert_eq!(streams_of(&group), ["a-1"]);
    }

    #[test]
    fn an_append_goes_alone_only_while_nothing_else_is_active() {
        let recorder = Arc::new(Recorder {
            groups: Mutex::new(Vec::new()),
        });
        let (committer, _lanes) = Committer::<(StreamName, usize)>::start(recorder, limits());
        let alone = committer.alone().expect("nothing is active");
        assert!(committer.alone().is_none(), "one alone at a time");
        drop(alone);
        assert!(committer.alone().is_some(), "released when dropped");
    }

    #[test]
    fn streams_stay_on_their_lane() {
        let a = name("tenant-a");
        assert_eq!(lane_of(&a, 4), lane_of(&a, 4));
        assert!(lane_of(&a, 4) < 4);
        assert_eq!(lane_of(&a, 1), 0);
    }
}
