//! Wakes waiters when a child of the host ends, so that a run notices a service's exit when
//! it happens instead of at its next poll.
//!
//! The host polls its services' state (a network environment answers the question, and on
//! Docker nothing signals the host), with a back-off up to tens of milliseconds between
//! polls. For processes the host itself started, the kernel says when one ends: `SIGCHLD`.
//! One thread turns each `SIGCHLD` into a new generation and wakes every waiter; a waiter
//! reads the generation *before* it checks what it waits for, then sleeps until the
//! generation moves on or its poll interval passes, so an exit between the check and the
//! sleep is never missed and containers still get polled.

use std::{
    io::Read,
    os::unix::net::UnixStream,
    sync::{Condvar, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

struct Bell {
    generation: Mutex<u64>,
    rang: Condvar,
}

static BELL: Bell = Bell {
    generation: Mutex::new(0),
    rang: Condvar::new(),
};

/// The bell, once its listening thread runs; `None` where the signal handler or the thread
/// could not be set up (waiters then simply sleep).
fn bell() -> Option<&'static Bell> {
    static LISTENING: OnceLock<bool> = OnceLock::new();
    let listening = *LISTENING.get_or_init(|| match listen(&BELL) {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!("child exits are polled only: {err}");
            false
        }
    });
    listening.then_some(&BELL)
}

fn listen(bell: &'static Bell) -> std::io::Result<()> {
    let (mut read, write) = UnixStream::pair()?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGCHLD, write)?;
    thread::Builder::new()
        .name("panther-sigchld".into())
        .spawn(move || {
            let mut buffer = [0u8; 64];
            while matches!(read.read(&mut buffer), Ok(n) if n > 0) {
                *bell.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                bell.rang.notify_all();
            }
        })?;
    Ok(())
}

/// The current generation: read it before checking whether what you wait for happened.
pub fn generation() -> u64 {
    bell().map_or(0, |b| {
        *b.generation.lock().unwrap_or_else(|e| e.into_inner())
    })
}

/// Sleeps until a child of the host ends after `seen` (a [`generation`]) or `timeout` passes.
pub fn wait_after(seen: u64, timeout: Duration) {
    let Some(bell) = bell() else {
        thread::sleep(timeout);
        return;
    };
    let deadline = Instant::now() + timeout;
    let mut generation = bell.generation.lock().unwrap_or_else(|e| e.into_inner());
    while *generation == seen {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        generation = bell
            .rang
            .wait_timeout(generation, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_ending_wakes_a_waiter_at_once() {
        let seen = generation();
        let started = Instant::now();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        wait_after(seen, Duration::from_secs(30));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "woken by the exit, not by the time limit"
        );
        child.wait().unwrap();
    }
}
