//! The threads the engine's per-series sketch asks run on: one per core, shared by
//! every query, so a query over many series takes at most the machine.
//!
//! Plain threads, not a rayon pool: an ask holds its sketch's lock while it waits for a
//! plugin call on the plugin pool, and a rayon worker waiting on another pool runs
//! other jobs of its own meanwhile, which could need the lock it holds.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, Sender, channel};

use parking_lot::Mutex;

type Job = Box<dyn FnOnce() + Send>;

/// The shared ask threads; `None` when none could be started.
static POOL: LazyLock<Option<Mutex<Sender<Job>>>> = LazyLock::new(start);

fn start() -> Option<Mutex<Sender<Job>>> {
    let (jobs, receive) = channel::<Job>();
    let receive = Arc::new(Mutex::new(receive));
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let mut started = 0;
    for i in 0..threads {
        let receive: Arc<Mutex<Receiver<Job>>> = Arc::clone(&receive);
        let spawned = std::thread::Builder::new()
            .name(format!("sketch-ask-{i}"))
            .stack_size(crate::THREAD_STACK_BYTES)
            .spawn(move || {
                loop {
                    let job = receive.lock().recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
        match spawned {
            Ok(_) => started += 1,
            Err(error) => tracing::error!(%error, "cannot start a sketch-ask thread"),
        }
    }
    (started > 0).then(|| Mutex::new(jobs))
}

/// `f` of every item, in order, spread over the ask threads; the caller waits. `None`
/// for an item whose `f` did not return (it panicked). Runs on the caller's thread when
/// there are no ask threads.
pub fn map<T, R>(items: Vec<T>, f: impl Fn(T) -> R + Send + Sync + 'static) -> Vec<Option<R>>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let Some(jobs) = &*POOL else {
        return items.into_iter().map(|item| Some(f(item))).collect();
    };
    let f = Arc::new(f);
    let (done, results) = channel();
    let count = items.len();
    // Each ask runs in the caller's span, so its plugin calls join the query's trace.
    let span = tracing::Span::current();
    for (i, item) in items.into_iter().enumerate() {
        let (f, done, span) = (Arc::clone(&f), done.clone(), span.clone());
        let job: Job = Box::new(move || {
            let _ = done.send((i, span.in_scope(|| f(item))));
        });
        if let Err(unsent) = jobs.lock().send(job) {
            // The threads are gone: run it here.
            (unsent.0)();
        }
    }
    drop(done);
    let mut out: Vec<Option<R>> = (0..count).map(|_| None).collect();
    for (i, r) in results.iter().take(count) {
        out[i] = Some(r);
    }
    out
}
