//! The state cache's promises: a command on a cached tenant costs one append and no read, however
//! long its stream; another process's write costs one conflict (or, for a refusal or a no-op,
//! one read of the stream's seq), never a wrong answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use ledger_commands::{CommandRequest, Executor, tenant_stream};
use ledger_core::{
    AppendResult, BoxFuture, EventStore, EventStream, ExpectedSeq, NewEvent, ReadAll, Seq,
    StoreError, StreamAppend, StreamName,
};
use ledger_domain::Command;
use ledger_memory::MemoryStore;
use uuid::Uuid;

/// A store that counts what commands ask of it.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    appends: AtomicUsize,
    seq_reads: AtomicUsize,
    events_read: Arc<AtomicUsize>,
}

impl Counting {
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.appends.load(Ordering::SeqCst),
            self.seq_reads.load(Ordering::SeqCst),
            self.events_read.load(Ordering::SeqCst),
        )
    }
}

impl EventStore for Counting {
    fn append(
        &self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(stream, expected, events)
    }

    fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append_multi(appends)
    }

    fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
        self.seq_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.stream_seq(stream)
    }

    fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream {
        let read = self.events_read.clone();
        self.inner
            .read_stream(stream, from)
            .inspect(move |_| {
                read.fetch_add(1, Ordering::SeqCst);
            })
            .boxed()
    }

    fn read_all(&self, query: ReadAll) -> EventStream {
        self.inner.read_all(query)
    }
}

fn lock(holder: &str) -> CommandRequest {
    CommandRequest::new(Command::AcquireLock {
        holder: holder.into(),
    })
}

async fn registered<S: EventStore>(ex: &Executor<S>) -> Uuid {
    let id = Uuid::now_v7();
    let register = Command::RegisterTenant {
        slug: format!("t{}", id.simple()),
        name: "Acme".into(),
    };
    ex.register(id, CommandRequest::new(register))
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_cached_tenant_costs_one_append_however_long_its_stream() {
    let store = Arc::new(Counting::default());
    let ex = Executor::new(store.clone()).with_state_cache(100);
    let id = registered(&ex).await;
    // 10,000 renewals by the holder: the stream grows, the cost does not.
    for _ in 0..10_000 {
        ex.execute(id, lock("tab-a")).await.unwrap();
    }
    let before = store.counts();
    let done = ex.execute(id, lock("tab-a")).await.unwrap();
    assert_eq!(done.seq, Seq(10_002));
    let after = store.counts();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (1, 0, 0),
        "one append, no read"
    );
    assert_eq!(after.2, 0, "the stream was never read");
    assert_eq!(ex.state_cache().unwrap().len(), 1);
}

#[tokio::test]
async fn another_process_costs_one_conflict_never_a_wrong_answer() {
    let shared = Arc::new(Counting::default());
    let here = Executor::new(shared.clone()).with_state_cache(100);
    let there = Executor::new(shared.clone()).with_state_cache(100);
    let id = registered(&here).await;
    here.execute(id, lock("tab-a")).await.unwrap();
    // Another process takes over after tab-a lets go: this process's cache still shows tab-a.
    let release = Command::ReleaseLock {
        holder: "tab-a".into(),
        reason: None,
    };
    there
        .execute(id, CommandRequest::new(release))
        .await
        .unwrap();
    there.execute(id, lock("tab-b")).await.unwrap();
    // tab-a renewing on the stale state: one conflict, rebased on the missed events, and the
    // right answer (tab-b holds the lock).
    let err = here.execute(id, lock("tab-a")).await.unwrap_err();
    assert_eq!(err.code(), "lock_held");
    // A refusal decided on a stale state is checked against the stream's seq first.
    let release_b = Command::ReleaseLock {
        holder: "tab-b".into(),
        reason: None,
    };
    there
        .execute(id, CommandRequest::new(release_b))
        .await
        .unwrap();
    let before = shared.counts();
    let done = here.execute(id, lock("tab-a")).await.unwrap();
    assert_eq!(done.appended, ["OnboardingLockAcquired"]);
    let after = shared.counts();
    assert_eq!(after.1 - before.1, 1, "one read of the stream's seq");
    let all: Vec<_> = shared
        .inner
        .read_stream(tenant_stream(id), Seq(1))
        .collect()
        .await;
    assert_eq!(done.seq, Seq(all.len() as u64));
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let ex = Executor::new(MemoryStore::new()).with_state_cache(3);
    for _ in 0..10 {
        let id = registered(&ex).await;
        ex.execute(id, lock("tab-a")).await.unwrap();
    }
    let cache = ex.state_cache().unwrap();
    assert_eq!((cache.len(), cache.capacity()), (3, 3));
}

#[tokio::test]
async fn an_erased_tenant_leaves_the_cache_also_when_another_process_erased_it() {
    let shared = Arc::new(MemoryStore::new());
    let here = Executor::new(shared.clone()).with_state_cache(100);
    let there = Executor::new(shared.clone()).with_state_cache(100);
    let id = registered(&here).await;
    here.execute(id, lock("tab-a")).await.unwrap();
    assert_eq!(here.state_cache().unwrap().len(), 1);
    there
        .execute(id, CommandRequest::new(Command::EraseTenant {}))
        .await
        .unwrap();
    let err = here.execute(id, lock("tab-a")).await.unwrap_err();
    assert_eq!(err.code(), "tenant_erased");
    assert!(here.state_cache().unwrap().is_empty());
}
