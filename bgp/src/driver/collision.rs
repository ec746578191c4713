//! Connection collision resolution (RFC 4271 §6.8) for the peer task.

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::notification::{BgpNotificationMessage, CeaseError};
use tokio::io::AsyncWriteExt;

use super::{Conn, Driver};
use crate::codec;
use crate::fsm::{Event, State, collision_keeps_existing};

impl Conn {
    /// Sends a Cease "connection collision resolution" (RFC 4271 §6.8, RFC 4486 subcode 7)
    /// and closes.
    pub(super) async fn close_for_collision(mut self) {
        let n = BgpMessage::Notification(BgpNotificationMessage::CeaseError(
            CeaseError::ConnectionCollisionResolution {
                value: Box::new([]),
            },
        ));
        let mut buf = Vec::new();
        if codec::encode(&n, &mut buf).is_ok() {
            let _ = self.writer.write_all(&buf).await;
        }
        let _ = self.writer.shutdown().await;
    }
}

impl Driver {
    /// RFC 4271 §6.8: once the pending connection's OPEN is in, keep the connection opened by
    /// the speaker with the higher BGP identifier and close the other with Cease 7.
    pub(super) async fn resolve_collision(&mut self) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        let len = match codec::frame_len(&pending.rbuf) {
            Ok(Some(len)) => len,
            Ok(None) => return,
            Err(_) => {
                self.pending = None;
                return;
            }
        };
        let open = match pending.decoder.decode(&pending.rbuf[..len]) {
            codec::Decoded::Message(BgpMessage::Open(open)) => BgpMessage::Open(open),
            _ => {
                self.pending = None;
                return;
            }
        };
        let BgpMessage::Open(ref o) = open else {
            return;
        };
        let remote_id = o.bgp_id();
        let local_id = self.session.config().router_id;
        // The existing connection is ours (outbound) unless it came from the listener too;
        // either way the pending one was opened by the peer.
        if collision_keeps_existing(local_id, remote_id, true)
            || !matches!(self.session.state(), State::OpenSent | State::OpenConfirm)
        {
            if let Some(p) = self.pending.take() {
                p.close_for_collision().await;
            }
            return;
        }
        let Some(mut survivor) = self.pending.take() else {
            return;
        };
        survivor.rbuf.drain(..len);
        let local = survivor.local_ip();
        if let Some(old) = self.conn.replace(survivor) {
            old.close_for_collision().await;
        }
        let Some(local) = local else {
            self.conn = None;
            self.handle(Event::TcpFailed).await;
            return;
        };
        self.handle(Event::CollisionSwitch { local }).await;
        self.handle(Event::Received(codec::Decoded::Message(open)))
            .await;
        self.process_frames().await;
    }
}
