//! Scheduling class of the calling thread (sched(7)): the gossip thread asks for `SCHED_FIFO`
//! so that CPU load on the node does not delay its acks and refutations.
//!
//! nix has no wrapper for `sched_setscheduler(2)`, so this module allows `unsafe` for that one
//! call (it only reads the parameter struct passed by reference).
#![allow(unsafe_code)]

use std::io;

use nix::libc;

/// Puts the calling thread under `SCHED_FIFO` at `priority` (1..=99). Fails with `EPERM`
/// without root or `CAP_SYS_NICE` (or when the cgroup grants no real-time runtime).
pub fn realtime(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid, initialised `sched_param` that outlives the call; pid 0 is
    // the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy (`libc::SCHED_*`).
pub fn policy() -> io::Result<i32> {
    // SAFETY: no pointers; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_getscheduler(0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_may_gets_sched_fifo_and_one_that_may_not_is_told_why() {
        let result = std::thread::spawn(|| (realtime(1), policy()))
            .join()
            .expect("thread");
        match result {
            (Ok(()), policy) => assert_eq!(policy.expect("policy"), libc::SCHED_FIFO),
            (Err(e), policy) => {
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert_eq!(policy.expect("policy"), libc::SCHED_OTHER);
            }
        }
    }
}
