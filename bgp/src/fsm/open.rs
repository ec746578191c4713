//! The OPEN message: what we offer (RFC 4271 §4.2 with the capabilities of RFC 4760, 2918,
//! 6793, 4724), the checks on the peer's (§6.2) and the negotiation of hold time, keepalive,
//! families and AS number width.

use std::net::IpAddr;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::notification::{BgpNotificationMessage, OpenMessageError};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_iana::address_family::AddressType;

use super::{Action, Negotiated, Session, State};
use crate::codec::describe_notification;
use crate::pack::{AS_TRANS, UpdateParams};
use crate::rib_out::Families;

impl Session {
    pub(super) fn open(&self) -> BgpOpenMessage {
        let mut caps = vec![
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                AddressType::Ipv4Unicast,
            )),
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                AddressType::Ipv6Unicast,
            )),
            BgpCapability::RouteRefresh,
            BgpCapability::FourOctetAs(FourOctetAsCapability::new(self.config.local_asn)),
        ];
        if let Some(time) = self.config.graceful_restart {
            // RFC 4724 §3: R set on the first session after our start (we restarted), F set
            // for both families: routes we announced stay valid while we come back.
            caps.push(BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    self.first_session,
                    false,
                    time.min(4095),
                    vec![
                        GracefulRestartAddressFamily::new(true, AddressType::Ipv4Unicast),
                        GracefulRestartAddressFamily::new(true, AddressType::Ipv6Unicast),
                    ],
                ),
            ));
        }
        let my_as = u16::try_from(self.config.local_asn).unwrap_or(AS_TRANS);
        BgpOpenMessage::new(
            my_as,
            self.config.hold_time,
            self.config.router_id,
            vec![BgpOpenMessageParameter::Capabilities(caps.into())],
        )
    }

    /// RFC 4271 §6.2 checks, then negotiation (§4.2 hold time, RFC 4760, RFC 6793).
    pub(super) fn on_open(&mut self, open: &BgpOpenMessage, out: &mut Vec<Action>) {
        let refuse = |e: OpenMessageError| BgpNotificationMessage::OpenMessageError(e);
        let error = if open.version() != 4 {
            Some(refuse(OpenMessageError::UnsupportedVersionNumber {
                value: Box::new([0, 4]),
            }))
        } else if open.my_asn4() != self.config.peer_asn {
            Some(refuse(OpenMessageError::BadPeerAs {
                value: Box::new([]),
            }))
        } else if matches!(open.hold_time(), 1 | 2) {
            Some(refuse(OpenMessageError::UnacceptableHoldTime {
                value: Box::new([]),
            }))
        } else if open.bgp_id().is_unspecified()
            || (self.config.ibgp() && open.bgp_id() == self.config.router_id)
        {
            Some(refuse(OpenMessageError::BadBgpIdentifier {
                value: Box::new([]),
            }))
        } else {
            None
        };
        if let Some(n) = error {
            self.counters.last_error = Some(format!("sent {}", describe_notification(&n)));
            out.push(Action::Send(BgpMessage::Notification(n)));
            self.enter_idle(true, out);
            return;
        }
        let caps = open.capabilities();
        let mut families = Families::default();
        let mut any_mp = false;
        let mut asn4 = false;
        let mut route_refresh = false;
        let mut graceful_restart = false;
        for cap in caps {
            match cap {
                BgpCapability::MultiProtocolExtensions(mp) => {
                    any_mp = true;
                    match mp.address_type() {
                        AddressType::Ipv4Unicast => families.ipv4 = true,
                        AddressType::Ipv6Unicast => families.ipv6 = true,
                        _ => {}
                    }
                }
                BgpCapability::FourOctetAs(_) => asn4 = true,
                BgpCapability::GracefulRestartCapability(_) => graceful_restart = true,
                BgpCapability::RouteRefresh | BgpCapability::EnhancedRouteRefresh => {
                    route_refresh = true
                }
                _ => {}
            }
        }
        if !any_mp {
            // RFC 4760 §8: without the capability only IPv4 unicast is exchanged.
            families.ipv4 = true;
        }
        let hold_time = self.config.hold_time.min(open.hold_time());
        let keepalive = if hold_time == 0 {
            0
        } else {
            let third = (hold_time / 3).max(1);
            self.config.keepalive.map_or(third, |k| k.clamp(1, third))
        };
        let negotiated = Negotiated {
            hold_time,
            keepalive,
            asn4,
            families,
            route_refresh,
            peer_id: open.bgp_id(),
            graceful_restart: graceful_restart && self.config.graceful_restart.is_some(),
        };
        self.negotiated = Some(negotiated);
        self.params = Some(self.update_params(asn4));
        out.push(Action::Send(BgpMessage::KeepAlive));
        self.arm_hold(out);
        self.arm_keepalive(out);
        self.state = State::OpenConfirm;
    }

    pub(super) fn update_params(&self, asn4: bool) -> UpdateParams {
        let (local_v4, local_v6) = match self.local {
            // No IPv4-mapped IPv6 next hop: routers cannot forward to `::ffff:a.b.c.d`; without
            // a configured IPv6 next hop, IPv6 routes are not sent on an IPv4 session (and
            // reported as such by the caller).
            Some(IpAddr::V4(a)) => (Some(a), None),
            Some(IpAddr::V6(a)) => (a.to_ipv4_mapped(), Some(a)),
            None => (None, None),
        };
        UpdateParams {
            local_asn: self.config.local_asn,
            ibgp: self.config.ibgp(),
            asn4,
            next_hop_v4: self.config.next_hop_v4.or(local_v4),
            next_hop_v6: self.config.next_hop_v6.or(local_v6),
        }
    }
}
