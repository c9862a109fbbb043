//! Exclusive `flock` on a lock file, with a short wait.
//!
//! A lock that another backup holds is refused, but only after [`LOCK_WAIT`]: a child process
//! started by any thread of this process (ssh, sshd in tests) shares every open file
//! description between its fork and its exec, close-on-exec or not, and so can hold a lock
//! that was just released for a moment. Without the wait, a backup right after another one
//! in the same process could fail as "in use" (seen in CI under load).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long a held lock is waited for before it counts as held by someone else.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Take an exclusive `flock` on `file`, retrying for up to `wait`. `Ok(false)`: still held.
pub fn lock_exclusive(file: &File, wait: Duration) -> std::io::Result<bool> {
    let start = Instant::now();
    loop {
        // SAFETY: flock on a valid descriptor that `file` owns for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
        if start.elapsed() >= wait {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .unwrap()
    }

    #[test]
    fn a_lock_released_during_the_wait_is_taken_and_a_held_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let first = open(&p);
        assert!(lock_exclusive(&first, Duration::ZERO).unwrap());
        // Held for the whole wait: refused after it.
        let t = Instant::now();
        assert!(!lock_exclusive(&open(&p), Duration::from_millis(100)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(100));
        // Released 200 ms into a 3 s wait: taken.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        assert!(lock_exclusive(&open(&p), LOCK_WAIT).unwrap());
        releaser.join().unwrap();
    }
}
