//! Tables of events and the actions they must produce.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_iana::address_family::AddressType;

use netgauze_bgp_pkt::update::BgpUpdateMessage;

use super::*;
use crate::codec::{Decoder, encode, notification_code};
use crate::pack::AS_TRANS;
use crate::route::RouteAttrs;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

fn config() -> SessionConfig {
    SessionConfig::new(64512, 64513, Ipv4Addr::new(192, 0, 2, 1))
}

fn peer_open(asn: u32, hold: u16, v6: bool) -> Event {
    let mut caps = vec![
        BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
            AddressType::Ipv4Unicast,
        )),
        BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)),
        BgpCapability::RouteRefresh,
    ];
    if v6 {
        caps.push(BgpCapability::MultiProtocolExtensions(
            MultiProtocolExtensionsCapability::new(AddressType::Ipv6Unicast),
        ));
    }
    let open = BgpOpenMessage::new(
        u16::try_from(asn).unwrap_or(AS_TRANS),
        hold,
        Ipv4Addr::new(192, 0, 2, 9),
        vec![BgpOpenMessageParameter::Capabilities(caps.into())],
    );
    Event::Received(Decoded::Message(BgpMessage::Open(open)))
}

fn keepalive() -> Event {
    Event::Received(Decoded::Message(BgpMessage::KeepAlive))
}

fn routes(n: u32) -> Arc<DesiredRoutes> {
    let mut d = HashMap::new();
    for i in 0..n {
        let p: IpNet = format!("198.18.{}.{}/32", i / 256, i % 256)
            .parse()
            .unwrap();
        d.insert(p, RouteAttrs::default());
    }
    Arc::new(d)
}

fn sent(actions: &[Action]) -> Vec<&BgpMessage> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn notifications(actions: &[Action]) -> Vec<(u8, u8)> {
    sent(actions)
        .into_iter()
        .filter_map(|m| match m {
            BgpMessage::Notification(n) => Some(notification_code(n)),
            _ => None,
        })
        .collect()
}

/// Decodes every UPDATE sent and returns (announced, withdrawn, end-of-rib count).
fn wire_routes(actions: &[Action]) -> (Vec<IpNet>, Vec<IpNet>, usize) {
    let mut dec = Decoder::new();
    dec.set_asn4(true);
    let (mut ann, mut wd, mut eor) = (Vec::new(), Vec::new(), 0);
    for m in sent(actions) {
        if let BgpMessage::Update(u) = m {
            let mut buf = Vec::new();
            encode(m, &mut buf).unwrap();
            assert!(buf.len() <= 4096);
            assert!(matches!(dec.decode(&buf), Decoded::Message(_)));
            if u.end_of_rib().is_some() {
                eor += 1;
            }
            ann.extend(u.nlri().iter().map(|a| IpNet::V4(a.network().address())));
            wd.extend(
                u.withdraw_routes()
                    .iter()
                    .map(|a| IpNet::V4(a.network().address())),
            );
        }
    }
    (ann, wd, eor)
}

fn established(
    config: SessionConfig,
    desired: Option<Arc<DesiredRoutes>>,
) -> (Session, Vec<Action>) {
    let peer_asn = config.peer_asn;
    let bfd = config.bfd;
    let mut s = Session::new(config);
    if bfd {
        s.handle(Event::BfdUp);
    }
    if let Some(d) = desired {
        s.handle(Event::RoutesChanged(d));
    }
    s.handle(Event::ManualStart);
    s.handle(Event::TcpEstablished { local: LOCAL });
    s.handle(peer_open(peer_asn, 90, true));
    let actions = s.handle(keepalive());
    assert_eq!(s.state(), State::Established);
    (s, actions)
}

#[test]
fn active_session_connects_on_start_and_passive_one_waits() {
    let mut s = Session::new(config());
    let a = s.handle(Event::ManualStart);
    assert_eq!(s.state(), State::Connect);
    assert_eq!(
        a,
        vec![
            Action::Connect,
            Action::Arm(Timer::ConnectRetry, Duration::from_secs(5))
        ]
    );

    let mut passive = Session::new(SessionConfig {
        passive: true,
        ..config()
    });
    let a = passive.handle(Event::ManualStart);
    assert_eq!(passive.state(), State::Active);
    assert!(!a.contains(&Action::Connect));
}

#[test]
fn connect_retry_backs_off_exponentially_up_to_the_cap() {
    let mut s = Session::new(config());
    s.handle(Event::ManualStart);
    s.handle(Event::TcpFailed);
    assert_eq!(s.state(), State::Active);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let a = s.handle(Event::TimerExpired(Timer::ConnectRetry));
        assert!(a.contains(&Action::Connect));
        for act in a {
            if let Action::Arm(Timer::ConnectRetry, d) = act {
                seen.push(d.as_secs());
            }
        }
        s.handle(Event::TcpFailed);
    }
    assert_eq!(seen, vec![10, 20, 40, 60, 60, 60]);
}

#[test]
fn open_exchange_negotiates_lower_hold_time_and_a_third_as_keepalive() {
    let mut s = Session::new(config());
    s.handle(Event::ManualStart);
    let a = s.handle(Event::TcpEstablished { local: LOCAL });
    assert!(matches!(sent(&a)[..], [BgpMessage::Open(_)]));
    assert_eq!(s.state(), State::OpenSent);
    let a = s.handle(peer_open(64513, 30, false));
    assert_eq!(s.state(), State::OpenConfirm);
    assert!(matches!(sent(&a)[..], [BgpMessage::KeepAlive]));
    assert!(a.contains(&Action::Arm(Timer::Hold, Duration::from_secs(30))));
    assert!(a.contains(&Action::Arm(Timer::Keepalive, Duration::from_secs(10))));
    let n = s.negotiated().unwrap();
    assert!(n.asn4 && n.families.ipv4 && !n.families.ipv6 && n.route_refresh);
}

#[test]
fn our_open_advertises_multiprotocol_four_octet_as_refresh_and_graceful_restart() {
    let mut s = Session::new(SessionConfig::new(
        4_200_000_000,
        65001,
        Ipv4Addr::new(192, 0, 2, 1),
    ));
    s.handle(Event::ManualStart);
    let a = s.handle(Event::TcpEstablished { local: LOCAL });
    let BgpMessage::Open(open) = sent(&a)[0] else {
        panic!("no open")
    };
    assert_eq!(open.my_as(), AS_TRANS);
    assert_eq!(open.my_asn4(), 4_200_000_000);
    let caps = open.capabilities();
    assert!(
        caps.iter()
            .any(|c| matches!(c, BgpCapability::RouteRefresh))
    );
    assert_eq!(
        caps.iter()
            .filter(|c| matches!(c, BgpCapability::MultiProtocolExtensions(_)))
            .count(),
        2
    );
    assert!(caps.iter().any(|c| matches!(c, BgpCapability::GracefulRestartCapability(g) if g.restart() && g.time() == 120)));
}

#[test]
fn open_from_wrong_as_is_refused_with_bad_peer_as() {
    let mut s = Session::new(config());
    s.handle(Event::ManualStart);
    s.handle(Event::TcpEstablished { local: LOCAL });
    let a = s.handle(peer_open(65000, 90, true));
    assert_eq!(notifications(&a), vec![(2, 2)]);
    assert!(a.contains(&Action::Close));
    assert_eq!(s.state(), State::Idle);
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Arm(Timer::ConnectRetry, _)))
    );
}

#[test]
fn open_with_hold_time_of_two_seconds_is_refused() {
    let mut s = Session::new(config());
    s.handle(Event::ManualStart);
    s.handle(Event::TcpEstablished { local: LOCAL });
    let a = s.handle(peer_open(64513, 2, true));
    assert_eq!(notifications(&a), vec![(2, 6)]);
}

#[test]
fn established_session_announces_desired_set_then_end_of_rib() {
    let (s, a) = established(config(), Some(routes(1000)));
    let (ann, wd, eor) = wire_routes(&a);
    assert_eq!(ann.len(), 1000);
    assert!(wd.is_empty());
    assert_eq!(eor, 2, "end-of-rib for ipv4 and ipv6");
    assert!(matches!(sent(&a).last(), Some(BgpMessage::Update(u)) if u.end_of_rib().is_some()));
    let updates = sent(&a).len() - 2;
    assert!(
        updates <= 2,
        "1000 /32 with equal attributes fit in 2 updates, got {updates}"
    );
    assert_eq!(s.counters().prefixes_sent, 1000);
}

#[test]
fn end_of_rib_waits_until_the_caller_set_the_desired_routes() {
    let (mut s, a) = established(config(), None);
    assert!(
        sent(&a).is_empty(),
        "nothing before the desired set is known"
    );
    let a = s.handle(Event::RoutesChanged(routes(3)));
    let (ann, _, eor) = wire_routes(&a);
    assert_eq!((ann.len(), eor), (3, 2));
    // A later change sends only the difference and no second end-of-rib.
    let a = s.handle(Event::RoutesChanged(routes(2)));
    let (ann, wd, eor) = wire_routes(&a);
    assert_eq!(
        (ann.len(), wd, eor),
        (0, vec!["198.18.0.2/32".parse().unwrap()], 0)
    );
}

#[test]
fn empty_desired_set_after_restart_sends_only_end_of_rib() {
    let (_, a) = established(config(), Some(routes(0)));
    let (ann, wd, eor) = wire_routes(&a);
    assert_eq!((ann.len(), wd.len(), eor), (0, 0, 2));
}

#[test]
fn hold_timer_expiry_sends_notification_and_closes() {
    let (mut s, _) = established(config(), None);
    let a = s.handle(Event::TimerExpired(Timer::Hold));
    assert_eq!(notifications(&a), vec![(4, 0)]);
    assert!(a.contains(&Action::Close));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(
        s.counters().last_error.as_deref(),
        Some("hold timer expired")
    );
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let (mut s, _) = established(config(), None);
    let a = s.handle(Event::TimerExpired(Timer::Keepalive));
    assert_eq!(
        a,
        vec![
            Action::Send(BgpMessage::KeepAlive),
            Action::Arm(Timer::Keepalive, Duration::from_secs(30))
        ]
    );
}

#[test]
fn manual_stop_sends_cease_with_shutdown_communication_and_stays_down() {
    let (mut s, _) = established(config(), None);
    let a = s.handle(Event::ManualStop {
        reason: "herald stopping".into(),
    });
    let msgs = sent(&a);
    let BgpMessage::Notification(n) = msgs[0] else {
        panic!("no notification")
    };
    assert_eq!(notification_code(n), (6, 2));
    assert_eq!(
        crate::codec::describe_notification(n),
        "notification 6/2 (Cease, Administrative Shutdown) \"herald stopping\""
    );
    assert!(a.contains(&Action::Disarm(Timer::ConnectRetry)));
    assert!(
        s.handle(Event::TimerExpired(Timer::ConnectRetry))
            .is_empty()
    );
    assert_eq!(s.state(), State::Idle);
}

/// An established session whose peer also sent the graceful restart capability.
fn established_with_graceful_restart(config: SessionConfig) -> Session {
    let mut s = Session::new(config);
    s.handle(Event::ManualStart);
    s.handle(Event::TcpEstablished { local: LOCAL });
    let Event::Received(Decoded::Message(BgpMessage::Open(open))) = peer_open(64513, 90, true)
    else {
        unreachable!()
    };
    let mut caps: Vec<BgpCapability> = open.capabilities().into_iter().cloned().collect();
    caps.push(BgpCapability::GracefulRestartCapability(
        netgauze_bgp_pkt::capabilities::GracefulRestartCapability::new(false, false, 120, vec![]),
    ));
    let open = BgpOpenMessage::new(
        open.my_as(),
        open.hold_time(),
        open.bgp_id(),
        vec![BgpOpenMessageParameter::Capabilities(caps.into())],
    );
    s.handle(Event::Received(Decoded::Message(BgpMessage::Open(open))));
    s.handle(keepalive());
    assert_eq!(s.state(), State::Established);
    s
}

#[test]
fn planned_restart_with_graceful_restart_closes_without_notification_and_stays_down() {
    let mut s = established_with_graceful_restart(config());
    assert!(s.negotiated().is_some_and(|n| n.graceful_restart));
    let a = s.handle(Event::PlannedRestart {
        reason: "herald restarting".into(),
    });
    assert!(
        notifications(&a).is_empty(),
        "a NOTIFICATION was sent: {a:?}"
    );
    assert!(a.contains(&Action::Close));
    assert!(a.contains(&Action::Disarm(Timer::ConnectRetry)));
    assert_eq!(s.state(), State::Idle);
    assert!(
        s.handle(Event::TimerExpired(Timer::ConnectRetry))
            .is_empty()
    );
}

#[test]
fn planned_restart_without_the_peers_graceful_restart_sends_a_cease() {
    let (mut s, _) = established(config(), None);
    assert!(s.negotiated().is_some_and(|n| !n.graceful_restart));
    let a = s.handle(Event::PlannedRestart {
        reason: "herald restarting".into(),
    });
    assert_eq!(notifications(&a), vec![(6, 2)]);
    // Ours switched off: a Cease too, even when the peer offers graceful restart.
    let mut off = config();
    off.graceful_restart = None;
    let mut s = established_with_graceful_restart(off);
    assert!(s.negotiated().is_some_and(|n| !n.graceful_restart));
    let a = s.handle(Event::PlannedRestart {
        reason: "herald restarting".into(),
    });
    assert_eq!(notifications(&a), vec![(6, 2)]);
}

#[test]
fn bfd_down_tears_down_at_once_and_bfd_up_restarts() {
    let (mut s, _) = established(
        SessionConfig {
            bfd: true,
            ..config()
        },
        None,
    );
    let a = s.handle(Event::BfdDown);
    assert_eq!(notifications(&a), vec![(6, 10)]);
    assert!(a.contains(&Action::Close));
    assert!(
        !a.iter()
            .any(|x| matches!(x, Action::Arm(Timer::ConnectRetry, _)))
    );
    assert!(
        s.handle(Event::TimerExpired(Timer::ConnectRetry))
            .is_empty(),
        "no reconnect while bfd is down"
    );
    let a = s.handle(Event::BfdUp);
    assert_eq!(a, vec![Action::Arm(Timer::ConnectRetry, Duration::ZERO)]);
    let a = s.handle(Event::TimerExpired(Timer::ConnectRetry));
    assert!(a.contains(&Action::Connect));
}

#[test]
fn session_with_bfd_does_not_connect_before_bfd_is_up() {
    let mut s = Session::new(SessionConfig {
        bfd: true,
        ..config()
    });
    assert!(s.handle(Event::ManualStart).is_empty());
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn route_refresh_resends_the_adj_rib_out_of_that_family() {
    let (mut s, _) = established(config(), Some(routes(10)));
    let rr =
        BgpRouteRefreshMessage::new(AddressType::Ipv4Unicast, RouteRefreshSubcode::NormalRequest);
    let a = s.handle(Event::Received(Decoded::Message(BgpMessage::RouteRefresh(
        rr,
    ))));
    let (ann, wd, eor) = wire_routes(&a);
    assert_eq!((ann.len(), wd.len(), eor), (10, 0, 0));
    assert_eq!(s.state(), State::Established);
}

#[test]
fn unexpected_open_in_established_is_an_fsm_error() {
    let (mut s, _) = established(config(), None);
    let a = s.handle(peer_open(64513, 90, true));
    assert_eq!(notifications(&a), vec![(5, 3)]);
}

#[test]
fn received_notification_ends_the_session_and_records_the_reason() {
    let (mut s, _) = established(config(), None);
    let n = crate::codec::shutdown_notification("maintenance");
    let a = s.handle(Event::Received(Decoded::Message(BgpMessage::Notification(
        n,
    ))));
    assert!(a.contains(&Action::Close));
    assert_eq!(
        s.counters().last_error.as_deref(),
        Some("received notification 6/2 (Cease, Administrative Shutdown) \"maintenance\"")
    );
}

fn peer_update(prefixes: &[&str], withdrawn: &[&str]) -> BgpUpdateMessage {
    use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress};
    let conv = |p: &&str| {
        Ipv4UnicastAddress::new_no_path_id(Ipv4Unicast::from_net(p.parse().unwrap()).unwrap())
    };
    BgpUpdateMessage::new(
        withdrawn.iter().map(conv).collect::<Vec<_>>(),
        vec![],
        prefixes.iter().map(conv).collect::<Vec<_>>(),
    )
}

#[test]
fn received_routes_are_counted_and_treat_as_withdraw_removes_them() {
    let (mut s, _) = established(config(), None);
    s.handle(Event::Received(Decoded::Message(BgpMessage::Update(
        peer_update(&["203.0.113.0/24", "203.0.114.0/24"], &[]),
    ))));
    assert_eq!(s.counters().prefixes_received, 2);
    s.handle(Event::Received(Decoded::Message(BgpMessage::Update(
        peer_update(&[], &["203.0.113.0/24"]),
    ))));
    assert_eq!(s.counters().prefixes_received, 1);
    s.handle(Event::Received(Decoded::TreatAsWithdraw(peer_update(
        &["203.0.114.0/24"],
        &[],
    ))));
    assert_eq!(s.counters().prefixes_received, 0);
    assert_eq!(s.counters().treat_as_withdraw, 1);
    assert_eq!(s.state(), State::Established);
}

#[test]
fn peer_exceeding_the_received_prefix_limit_gets_cease() {
    let (mut s, _) = established(
        SessionConfig {
            max_received: 1,
            ..config()
        },
        None,
    );
    let a = s.handle(Event::Received(Decoded::Message(BgpMessage::Update(
        peer_update(&["203.0.113.0/24", "203.0.114.0/24"], &[]),
    ))));
    assert_eq!(notifications(&a), vec![(6, 1)]);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn collision_keeps_the_connection_opened_by_the_higher_identifier() {
    let low = Ipv4Addr::new(1, 1, 1, 1);
    let high = Ipv4Addr::new(2, 2, 2, 2);
    assert!(collision_keeps_existing(high, low, true));
    assert!(!collision_keeps_existing(high, low, false));
    assert!(collision_keeps_existing(low, high, false));
    assert!(!collision_keeps_existing(low, high, true));
}

#[test]
fn new_session_starts_from_empty_adj_rib_out_and_reannounces_everything() {
    let (mut s, _) = established(config(), Some(routes(5)));
    s.handle(Event::TcpFailed);
    assert_eq!(s.counters().prefixes_sent, 0);
    s.handle(Event::TimerExpired(Timer::ConnectRetry));
    s.handle(Event::TcpEstablished { local: LOCAL });
    s.handle(peer_open(64513, 90, true));
    let a = s.handle(keepalive());
    let (ann, wd, eor) = wire_routes(&a);
    assert_eq!((ann.len(), wd.len(), eor), (5, 0, 2));
}

#[test]
fn collision_switch_restarts_the_open_exchange_on_the_surviving_connection() {
    let mut s = Session::new(config());
    s.handle(Event::ManualStart);
    s.handle(Event::TcpEstablished { local: LOCAL });
    s.handle(peer_open(64513, 90, true));
    assert_eq!(s.state(), State::OpenConfirm);
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
    let a = s.handle(Event::CollisionSwitch { local: other });
    assert_eq!(s.state(), State::OpenSent);
    assert!(matches!(sent(&a)[..], [BgpMessage::Open(_)]));
    assert!(a.contains(&Action::Arm(Timer::Hold, LARGE_HOLD_TIME)));
    assert!(s.negotiated().is_none());
    // The surviving connection's OPEN and KEEPALIVE then establish as usual.
    s.handle(peer_open(64513, 90, true));
    s.handle(keepalive());
    assert_eq!(s.state(), State::Established);
    // No switch once Established (§6.8: the Established connection wins).
    assert!(s.handle(Event::CollisionSwitch { local: other }).is_empty());
}
