//! The host's own tasks, counted, so that shutdown can end them and wait
//! until none is left: a host that is gone keeps nothing running in the
//! embedder's runtime (nor, through a task's `Arc`s, its compiled policy
//! and the epoch ticker that goes with it).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// Spawns and counts the host's tasks; clones share the count.
#[derive(Clone)]
pub struct Tasks(Arc<Inner>);

struct Inner {
    running: AtomicUsize,
    idle: Notify,
    /// True once the host is gone: tasks that would wait on (retention,
    /// a kill grace, a ticker) stop waiting.
    ended: watch::Sender<bool>,
}

impl Default for Tasks {
    fn default() -> Tasks {
        Tasks(Arc::new(Inner {
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            ended: watch::channel(false).0,
        }))
    }
}

/// Held by a counted task until it ends, however it ends.
struct Counted(Arc<Inner>);

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tasks {
    fn count(&self) -> Counted {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        Counted(Arc::clone(&self.0))
    }

    /// `tokio::spawn`, counted.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let counted = self.count();
        tokio::spawn(async move {
            let out = task.await;
            drop(counted);
            out
        })
    }

    /// `tokio::task::spawn_blocking`, counted.
    pub fn spawn_blocking<F, R>(&self, work: F) -> tokio::task::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let counted = self.count();
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(counted);
            out
        })
    }

    /// Resolves once the host is gone (see [`Tasks::end`]).
    pub fn ended(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut ended = self.0.ended.subscribe();
        async move {
            // An error means the sender is gone, which is the end too.
            let _ = ended.wait_for(|ended| *ended).await;
        }
    }

    /// Whether [`Tasks::end`] was called.
    pub fn is_ended(&self) -> bool {
        *self.0.ended.borrow()
    }

    /// Tells every task that waits on [`Tasks::ended`] to stop.
    pub fn end(&self) {
        self.0.ended.send_replace(true);
    }

    /// How many counted tasks are alive.
    pub fn running(&self) -> usize {
        self.0.running.load(Ordering::Acquire)
    }

    /// Waits, at most `limit`, until no counted task is left.
    pub async fn wait(&self, limit: Duration) {
        let all_done = async {
            loop {
                let idle = self.0.idle.notified();
                tokio::pin!(idle);
                // Registered before the check, so a last task ending in
                // between still wakes it.
                idle.as_mut().enable();
                if self.running() == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(limit, all_done).await.is_err() {
            tracing::warn!(
                tasks = self.running(),
                "host tasks still running after {limit:?}"
            );
        }
    }
}
