//! Building UPDATE messages from [`Changes`]: many prefixes with equal attributes per
//! message, never above [`MAX_MESSAGE_LEN`].
//!
//! IPv4 unicast travels in the classic NLRI / Withdrawn Routes fields with NEXT_HOP
//! (RFC 4271 §4.3); IPv6 unicast in MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760 §3, §4). The
//! attributes are ORIGIN IGP, AS_PATH (own AS for eBGP, empty for iBGP; AS_TRANS plus
//! AS4_PATH towards 2-octet peers, RFC 6793 §4.2.2), LOCAL_PREF (iBGP only), COMMUNITIES
//! (RFC 1997) and LARGE_COMMUNITY (RFC 8092).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::community::{Community, LargeCommunity};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4Path, As4PathSegment, AsPath, AsPathSegmentType, Communities,
    LargeCommunities, LocalPreference, MpReach, MpUnreach, NextHop, Origin, PathAttribute,
    PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_parse_utils::WritablePdu;

use super::codec::MAX_MESSAGE_LEN;
use super::error::EncodeError;
use super::rib_out::{Changes, Families};
use super::route::RouteAttrs;

/// AS_TRANS, the 2-octet stand-in for a 4-octet AS (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// LOCAL_PREF sent to iBGP peers when the route does not set one (RFC 4271 §5.1.5 leaves the
/// value to policy; 100 is what every implementation uses).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// What the session negotiated that shapes its UPDATEs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateParams {
    /// Our AS number.
    pub local_asn: u32,
    /// Peer AS equals ours.
    pub ibgp: bool,
    /// Both sides advertised 4-octet AS support.
    pub asn4: bool,
    /// NEXT_HOP for IPv4 routes (`None`: IPv4 routes cannot be sent on this session).
    pub next_hop_v4: Option<Ipv4Addr>,
    /// MP_REACH next hop for IPv6 routes (`None`: IPv6 routes cannot be sent).
    pub next_hop_v6: Option<Ipv6Addr>,
}

/// Bytes a prefix takes in an NLRI field: length octet plus the significant octets
/// (RFC 4271 §4.3).
fn prefix_len(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

fn attr(
    optional: bool,
    transitive: bool,
    extended: bool,
    value: PathAttributeValue,
) -> Result<PathAttribute, EncodeError> {
    PathAttribute::from(optional, transitive, false, extended, value)
        .map_err(|(_, e)| EncodeError::Library(format!("{e:?}")))
}

fn update(
    withdrawn: Vec<Ipv4UnicastAddress>,
    attrs: Vec<PathAttribute>,
    nlri: Vec<Ipv4UnicastAddress>,
) -> BgpMessage {
    BgpMessage::Update(BgpUpdateMessage::new(withdrawn, attrs, nlri))
}

fn v4(prefix: &IpNet) -> Option<Ipv4UnicastAddress> {
    match prefix {
        IpNet::V4(net) => Ipv4Unicast::from_net(*net)
            .ok()
            .map(Ipv4UnicastAddress::new_no_path_id),
        IpNet::V6(_) => None,
    }
}

fn v6(prefix: &IpNet) -> Option<Ipv6UnicastAddress> {
    match prefix {
        IpNet::V6(net) => Ipv6Unicast::from_net(*net)
            .ok()
            .map(|n| Ipv6UnicastAddress::new(None, n)),
        IpNet::V4(_) => None,
    }
}

impl UpdateParams {
    /// The families this session can announce: negotiated ones that have a next hop.
    pub fn families(&self, negotiated: Families) -> Families {
        Families {
            ipv4: negotiated.ipv4 && self.next_hop_v4.is_some(),
            ipv6: negotiated.ipv6 && self.next_hop_v6.is_some(),
        }
    }

    fn as_path(&self) -> Result<Vec<PathAttribute>, EncodeError> {
        let mut out = Vec::with_capacity(2);
        if self.ibgp {
            let path = if self.asn4 {
                AsPath::As4PathSegments(Box::new([]))
            } else {
                AsPath::As2PathSegments(Box::new([]))
            };
            out.push(attr(false, true, false, PathAttributeValue::AsPath(path))?);
        } else if self.asn4 {
            let seg = As4PathSegment::new(AsPathSegmentType::AsSequence, vec![self.local_asn]);
            let path = AsPath::As4PathSegments(vec![seg].into());
            out.push(attr(false, true, false, PathAttributeValue::AsPath(path))?);
        } else {
            let as2 = u16::try_from(self.local_asn).unwrap_or(AS_TRANS);
            let seg = As2PathSegment::new(AsPathSegmentType::AsSequence, vec![as2]);
            let path = AsPath::As2PathSegments(vec![seg].into());
            out.push(attr(false, true, false, PathAttributeValue::AsPath(path))?);
            if u16::try_from(self.local_asn).is_err() {
                // RFC 6793 §4.2.2: the real path rides in AS4_PATH.
                let seg = As4PathSegment::new(AsPathSegmentType::AsSequence, vec![self.local_asn]);
                let path = As4Path::new(vec![seg]);
                out.push(attr(true, true, false, PathAttributeValue::As4Path(path))?);
            }
        }
        Ok(out)
    }

    /// Attributes shared by every route of a group, in type-code order, without the
    /// family-specific next hop / MP_REACH.
    fn common_attrs(
        &self,
        attrs: &RouteAttrs,
    ) -> Result<(Vec<PathAttribute>, Vec<PathAttribute>), EncodeError> {
        let mut head = vec![attr(
            false,
            true,
            false,
            PathAttributeValue::Origin(Origin::IGP),
        )?];
        let mut path = self.as_path()?;
        let as4_path = if path.len() > 1 { path.pop() } else { None };
        head.extend(path);
        let mut tail = Vec::new();
        if self.ibgp {
            let pref = attrs.local_pref().unwrap_or(DEFAULT_LOCAL_PREF);
            tail.push(attr(
                false,
                true,
                false,
                PathAttributeValue::LocalPreference(LocalPreference::new(pref)),
            )?);
        }
        if !attrs.communities().is_empty() {
            let list: Vec<Community> = attrs
                .communities()
                .iter()
                .map(|&c| Community::new(c))
                .collect();
            let extended = list.len() * 4 > 255;
            tail.push(attr(
                true,
                true,
                extended,
                PathAttributeValue::Communities(Communities::new(list)),
            )?);
        }
        // MP_REACH (14) goes between COMMUNITIES (8) and AS4_PATH (17); the caller inserts it
        // at the start of the returned tail's second half.
        let mut after_mp = Vec::new();
        if let Some(a) = as4_path {
            after_mp.push(a);
        }
        if !attrs.large_communities().is_empty() {
            let list: Vec<LargeCommunity> = attrs
                .large_communities()
                .iter()
                .map(|&(g, a, b)| LargeCommunity::new(g, a, b))
                .collect();
            let extended = list.len() * 12 > 255;
            after_mp.push(attr(
                true,
                true,
                extended,
                PathAttributeValue::LargeCommunities(LargeCommunities::new(list)),
            )?);
        }
        head.extend(tail);
        Ok((head, after_mp))
    }

    /// The UPDATEs that carry `changes`: withdrawals first, then one run of messages per
    /// attribute group. Prefixes of a family without a next hop are skipped (the caller
    /// restricts the diff to [`families`](Self::families), so this does not happen in a
    /// session).
    pub fn build(&self, changes: &Changes) -> Result<Vec<BgpMessage>, EncodeError> {
        let mut out = Vec::new();
        self.build_withdrawals(&changes.withdraw, &mut out)?;
        for (attrs, prefixes) in &changes.announce {
            self.build_announcements(attrs, prefixes, &mut out)?;
        }
        Ok(out)
    }

    fn build_withdrawals(
        &self,
        prefixes: &[IpNet],
        out: &mut Vec<BgpMessage>,
    ) -> Result<(), EncodeError> {
        // IPv4: Withdrawn Routes field of an UPDATE with no attributes.
        let base = update(vec![], vec![], vec![]).len();
        let mut batch = Vec::new();
        let mut size = base;
        for p in prefixes.iter().filter(|p| p.addr().is_ipv4()) {
            let Some(addr) = v4(p) else { continue };
            if size + prefix_len(p) > MAX_MESSAGE_LEN {
                out.push(update(std::mem::take(&mut batch), vec![], vec![]));
                size = base;
            }
            size += prefix_len(p);
            batch.push(addr);
        }
        if !batch.is_empty() {
            out.push(update(batch, vec![], vec![]));
        }
        // IPv6: MP_UNREACH_NLRI (RFC 4760 §4), extended length so the header size is fixed.
        let mp = |nlri: Vec<Ipv6UnicastAddress>| -> Result<BgpMessage, EncodeError> {
            let a = attr(
                true,
                false,
                true,
                PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri: nlri.into() }),
            )?;
            Ok(update(vec![], vec![a], vec![]))
        };
        let base = mp(vec![])?.len();
        let mut batch = Vec::new();
        let mut size = base;
        for p in prefixes.iter().filter(|p| p.addr().is_ipv6()) {
            let Some(addr) = v6(p) else { continue };
            if size + prefix_len(p) > MAX_MESSAGE_LEN {
                out.push(mp(std::mem::take(&mut batch))?);
                size = base;
            }
            size += prefix_len(p);
            batch.push(addr);
        }
        if !batch.is_empty() {
            out.push(mp(batch)?);
        }
        Ok(())
    }

    fn build_announcements(
        &self,
        attrs: &RouteAttrs,
        prefixes: &[IpNet],
        out: &mut Vec<BgpMessage>,
    ) -> Result<(), EncodeError> {
        let (head, after_mp) = self.common_attrs(attrs)?;
        if let Some(nh) = self.next_hop_v4 {
            let mut attrs4 = head.clone();
            // NEXT_HOP (3) right after AS_PATH (2).
            let pos = attrs4.len().min(2);
            attrs4.insert(
                pos,
                attr(
                    false,
                    true,
                    false,
                    PathAttributeValue::NextHop(NextHop::new(nh)),
                )?,
            );
            attrs4.extend(after_mp.iter().cloned());
            let base = update(vec![], attrs4.clone(), vec![]).len();
            let mut batch = Vec::new();
            let mut size = base;
            for p in prefixes.iter().filter(|p| p.addr().is_ipv4()) {
                let Some(addr) = v4(p) else { continue };
                if size + prefix_len(p) > MAX_MESSAGE_LEN {
                    out.push(update(vec![], attrs4.clone(), std::mem::take(&mut batch)));
                    size = base;
                }
                size += prefix_len(p);
                batch.push(addr);
            }
            if !batch.is_empty() {
                out.push(update(vec![], attrs4, batch));
            }
        }
        if let Some(nh) = self.next_hop_v6 {
            let mp = |nlri: Vec<Ipv6UnicastAddress>| -> Result<BgpMessage, EncodeError> {
                let reach = attr(
                    true,
                    false,
                    true,
                    PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                        next_hop_global: nh,
                        next_hop_local: None,
                        nlri: nlri.into(),
                    }),
                )?;
                let mut all = head.clone();
                all.push(reach);
                all.extend(after_mp.iter().cloned());
                Ok(update(vec![], all, vec![]))
            };
            let base = mp(vec![])?.len();
            let mut batch = Vec::new();
            let mut size = base;
            for p in prefixes.iter().filter(|p| p.addr().is_ipv6()) {
                let Some(addr) = v6(p) else { continue };
                if size + prefix_len(p) > MAX_MESSAGE_LEN {
                    out.push(mp(std::mem::take(&mut batch))?);
                    size = base;
                }
                size += prefix_len(p);
                batch.push(addr);
            }
            if !batch.is_empty() {
                out.push(mp(batch)?);
            }
        }
        Ok(())
    }
}

/// End-of-RIB markers for `families` (RFC 4724 §2): an empty UPDATE for IPv4 unicast, an
/// UPDATE with an empty MP_UNREACH_NLRI for IPv6 unicast.
pub fn end_of_rib(families: Families) -> Result<Vec<BgpMessage>, EncodeError> {
    let mut out = Vec::new();
    if families.ipv4 {
        out.push(update(vec![], vec![], vec![]));
    }
    if families.ipv6 {
        let a = attr(
            true,
            false,
            true,
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri: Box::new([]) }),
        )?;
        out.push(update(vec![], vec![a], vec![]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
