//! Routes on an Established session: converging the peer to the desired set (diff, packed
//! UPDATEs, End-of-RIB), answering ROUTE-REFRESH, and counting what the peer sends.

use std::collections::BTreeMap;

use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::notification::{BgpNotificationMessage, CeaseError};
use netgauze_bgp_pkt::path_attribute::{MpReach, MpUnreach, PathAttributeValue};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_iana::address_family::AddressType;

use super::{Action, Session};
use crate::codec::describe_notification;
use crate::pack::{UpdateParams, end_of_rib};
use crate::rib_out::Changes;
use crate::route::RouteAttrs;

impl Session {
    /// Sends what moves the peer to the desired set; after the first complete pass on a
    /// session, End-of-RIB (RFC 4724 §2). Until the caller has set a desired set nothing is
    /// sent, not even End-of-RIB: after a restart the peer keeps our stale routes until the
    /// whole desired set has been announced.
    pub(super) fn converge(&mut self, out: &mut Vec<Action>) {
        let (Some(desired), Some(params), Some(neg)) =
            (self.desired.clone(), self.params.clone(), self.negotiated)
        else {
            return;
        };
        let families = params.families(neg.families);
        let changes = self.rib_out.diff(&desired, families);
        if !self.push_changes(&params, &changes, out) {
            return;
        }
        self.rib_out.commit(&changes);
        if !self.eor_sent {
            self.eor_sent = true;
            match end_of_rib(neg.families) {
                Ok(msgs) => out.extend(msgs.into_iter().map(Action::Send)),
                Err(e) => self.encode_failed(&e.to_string(), out),
            }
        }
    }

    pub(super) fn push_changes(
        &mut self,
        params: &UpdateParams,
        changes: &Changes,
        out: &mut Vec<Action>,
    ) -> bool {
        if changes.is_empty() {
            return true;
        }
        match params.build(changes) {
            Ok(msgs) => {
                out.extend(msgs.into_iter().map(Action::Send));
                true
            }
            Err(e) => {
                self.encode_failed(&e.to_string(), out);
                false
            }
        }
    }

    pub(super) fn encode_failed(&mut self, what: &str, out: &mut Vec<Action>) {
        let n = BgpNotificationMessage::CeaseError(CeaseError::OutOfResources {
            value: Box::new([]),
        });
        self.counters.last_error = Some(format!("encoding failed: {what}"));
        out.push(Action::Send(BgpMessage::Notification(n)));
        self.enter_idle(true, out);
    }

    pub(super) fn on_route_refresh(&mut self, afi: AddressType, out: &mut Vec<Action>) {
        let Some(params) = self.params.clone() else {
            return;
        };
        let want_v4 = afi == AddressType::Ipv4Unicast;
        let want_v6 = afi == AddressType::Ipv6Unicast;
        let mut changes = Changes::default();
        for (attrs, prefixes) in self.rib_snapshot() {
            let kept: Vec<IpNet> = prefixes
                .into_iter()
                .filter(|p| (want_v4 && p.addr().is_ipv4()) || (want_v6 && p.addr().is_ipv6()))
                .collect();
            if !kept.is_empty() {
                changes.announce.insert(attrs, kept);
            }
        }
        self.push_changes(&params, &changes, out);
    }

    pub(super) fn rib_snapshot(&self) -> BTreeMap<RouteAttrs, Vec<IpNet>> {
        let mut groups: BTreeMap<_, Vec<IpNet>> = Default::default();
        if let Some(desired) = &self.desired {
            for prefix in desired.keys() {
                if let Some(attrs) = self.rib_out.get(prefix) {
                    groups.entry(attrs.clone()).or_default().push(*prefix);
                }
            }
        }
        for v in groups.values_mut() {
            v.sort_unstable();
        }
        groups
    }

    /// Counts the peer's routes (RFC 4271 §9: we do not install them). With
    /// `treat_as_withdraw`, every NLRI of the message counts as withdrawn (RFC 7606 §2).
    pub(super) fn count_update(
        &mut self,
        update: &BgpUpdateMessage,
        treat_as_withdraw: bool,
        out: &mut Vec<Action>,
    ) {
        let mut announced: Vec<IpNet> = Vec::new();
        let mut withdrawn: Vec<IpNet> = update
            .withdraw_routes()
            .iter()
            .map(|a| IpNet::V4(a.network().address()))
            .collect();
        announced.extend(
            update
                .nlri()
                .iter()
                .map(|a| IpNet::V4(a.network().address())),
        );
        for attr in update.path_attributes() {
            match attr.value() {
                PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) => {
                    announced.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())));
                }
                PathAttributeValue::MpReach(MpReach::Ipv4Unicast { nlri, .. }) => {
                    announced.extend(nlri.iter().map(|a| IpNet::V4(a.network().address())));
                }
                PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => {
                    withdrawn.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())));
                }
                PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { nlri }) => {
                    withdrawn.extend(nlri.iter().map(|a| IpNet::V4(a.network().address())));
                }
                _ => {}
            }
        }
        for p in &withdrawn {
            self.received.remove(p);
        }
        if treat_as_withdraw {
            for p in &announced {
                self.received.remove(p);
            }
            return;
        }
        for p in announced {
            if self.received.len() >= self.config.max_received && !self.received.contains(&p) {
                let n = BgpNotificationMessage::CeaseError(
                    CeaseError::MaximumNumberOfPrefixesReached {
                        value: Box::new([]),
                    },
                );
                self.counters.last_error = Some(format!("sent {}", describe_notification(&n)));
                out.push(Action::Send(BgpMessage::Notification(n)));
                self.enter_idle(true, out);
                return;
            }
            self.received.insert(p);
        }
    }
}
