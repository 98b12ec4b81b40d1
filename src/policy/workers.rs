//! The threads admission's policy evaluations run on: one per evaluation slot, started with the
//! server and kept for its life.
//!
//! An evaluation is blocking (wasmtime runs the guest on the calling thread), so it must stay
//! off the async executor. tokio's blocking pool did that, but it starts a thread whenever none
//! is idle at that instant and lets threads go after ten seconds idle: under load it held a
//! dozen or more threads, each with its own allocator heap (peak memory), and at a low rate an
//! evaluation often landed on a thread whose caches were cold. The caller bounds the work in
//! flight to the number of workers (the server's evaluation slots), so a job never waits for a
//! thread and the channel never holds more than that.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The workers; dropping this lets them finish their jobs and end.
pub struct Workers {
    jobs: mpsc::Sender<Job>,
}

/// A job that panicked, or found no worker.
#[derive(Debug, thiserror::Error)]
#[error("the policy evaluation panicked")]
pub struct Panicked;

impl Workers {
    /// `count` threads (at least one), named `policy-worker-N`.
    pub fn start(count: usize) -> Workers {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("policy-worker-{n}"))
                .spawn(move || {
                    loop {
                        // One worker waits on the channel, the others on the lock.
                        let job = queue.lock().expect("jobs catch their panics").recv();
                        match job {
                            Ok(job) => job(),
                            Err(mpsc::RecvError) => return,
                        }
                    }
                })
                .expect("spawning a policy worker");
        }
        Workers { jobs }
    }

    /// Runs `work` on a worker and waits for its result without blocking the executor.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Panicked> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        });
        self.jobs.send(job).map_err(|_| Panicked)?;
        result.await.map_err(|_| Panicked)?.map_err(|_| Panicked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_named_workers_and_survives_a_panicking_one() {
        let workers = Workers::start(2);
        let name = workers.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert!(name.is_some_and(|name| name.starts_with("policy-worker-")));
        assert!(workers.run(|| panic!("a policy host bug")).await.is_err());
        assert_eq!(workers.run(|| 6 * 7).await.unwrap(), 42, "the workers keep serving");
    }
}
