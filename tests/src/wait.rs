//! Waiting for conditions with a deadline.

use std::time::{Duration, Instant};

/// Polls `probe` every few milliseconds until it returns `Some`, or panics after `timeout` with
/// `what` and the last observation (`last`), so a failing test says what it was waiting for.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(5);
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => {
                std::thread::sleep(interval);
                interval = (interval * 2).min(Duration::from_millis(100));
            }
        }
    }
}
