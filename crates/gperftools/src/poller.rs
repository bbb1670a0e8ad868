//! A thread that watches a service's processes while the service runs.
//!
//! The plugins cannot learn from the host when a wrapper around the service starts the
//! program, or when the program starts others: they read `/proc` again and again. Often at
//! first, when wrappers start the program within milliseconds; less often later, when what
//! starts is a process along the way, or a script or program that changed its command line.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// How long the first, frequent, polling lasts.
const EARLY: Duration = Duration::from_secs(2);

/// How long a [`Poller`] pauses between two polls.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// During the first two seconds.
    pub early: Duration,
    /// After them.
    pub later: Duration,
}

impl Pace {
    fn after(self, elapsed: Duration) -> Duration {
        if elapsed < EARLY {
            self.early
        } else {
            self.later
        }
    }
}

/// A thread that polls with its state `S` until the poll is done or the poller is stopped.
/// Dropping it stops it and waits for the thread.
pub struct Poller<S> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<S>>,
}

impl<S: Send + 'static> Poller<S> {
    /// Starts the thread `name`, which calls `poll(&mut state, stopping)` at `pace` until it
    /// returns true. `stopping` says that [`finish`](Self::finish) was called: the poll decides
    /// whether it still looks one last time.
    pub fn spawn(
        name: String,
        pace: Pace,
        mut state: S,
        mut poll: impl FnMut(&mut S, bool) -> bool + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let started = Instant::now();
            while !poll(&mut state, flag.load(Ordering::Relaxed)) {
                std::thread::park_timeout(pace.after(started.elapsed()));
            }
            state
        })?;
        Ok(Poller {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and returns its state; `Err` when the poll panicked.
    pub fn finish(mut self) -> std::thread::Result<S> {
        let thread = self
            .thread
            .take()
            .expect("only finish and drop take the thread");
        self.stop_and_join(thread)
    }
}

impl<S> Poller<S> {
    fn stop_and_join(&self, thread: JoinHandle<S>) -> std::thread::Result<S> {
        self.stop.store(true, Ordering::Relaxed);
        thread.thread().unpark();
        thread.join()
    }
}

impl<S> Drop for Poller<S> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.stop_and_join(thread);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        early: Duration::from_millis(1),
        later: Duration::from_millis(1),
    };

    #[test]
    fn polls_until_done() {
        let poller = Poller::spawn("count".into(), PACE, 0u32, |n, _| {
            *n += 1;
            *n == 5
        })
        .expect("spawn");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(poller.finish().expect("no panic"), 5);
    }

    #[test]
    fn finish_tells_the_poll_it_is_stopping() {
        let poller = Poller::spawn("stop".into(), PACE, (0u32, false), |(n, saw), stopping| {
            *n += 1;
            *saw = stopping;
            stopping
        })
        .expect("spawn");
        let (polls, saw_stopping) = poller.finish().expect("no panic");
        assert!(polls >= 1 && saw_stopping);
    }
}
