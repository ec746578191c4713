//! BFD and BGP together: a BFD session's state gates its BGP session (RFC 5882 §4.3).

use herald_bfd::driver::BfdStatus;
use herald_bfd::packet::State;
use tokio::sync::watch;

use crate::bgp::driver::BfdLink;

/// Connects a BFD session to a BGP session: every Up → not-Up tears the BGP session down at
/// once, and BGP may connect only while BFD is Up. Runs until either side is dropped.
pub async fn couple(mut bfd: watch::Receiver<BfdStatus>, bgp: BfdLink) {
    let mut up = false;
    loop {
        let now_up = bfd.borrow_and_update().state == State::Up;
        if now_up != up {
            up = now_up;
            bgp.set(up).await;
        }
        if bfd.changed().await.is_err() {
            return;
        }
    }
}
