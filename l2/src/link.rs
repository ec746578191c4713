//! Which interfaces can answer: Ethernet links that are up and have carrier, followed through
//! rtnetlink link events (`RTMGRP_LINK`).
//!
//! ```text
//!  kernel ──RTM_NEWLINK/DELLINK──> watcher task ──watch──> BTreeSet<interface name>
//! ```
//!
//! The watcher subscribes before it dumps the current links, so no change between the dump and
//! the subscription is lost. A link losing carrier (`IFF_LOWER_UP` cleared) leaves the set with
//! the event that reports it; the agent then withdraws the node's eligibility for that
//! interface's addresses and gossips the change.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{StreamExt, TryStreamExt};
use rtnetlink::constants::RTMGRP_LINK;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::L2Error;

/// What the watcher knows about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Interface name.
    pub name: String,
    /// Ethernet, administratively up and with carrier.
    pub usable: bool,
}

/// The links by index, updated from netlink messages. Pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkTable {
    links: BTreeMap<u32, LinkState>,
}

impl LinkTable {
    /// Applies an `RTM_NEWLINK` (`deleted` false) or `RTM_DELLINK` message.
    pub fn apply(&mut self, msg: &LinkMessage, deleted: bool) {
        let index = msg.header.index;
        if deleted {
            self.links.remove(&index);
            return;
        }
        let name = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        let Some(name) = name.or_else(|| self.links.get(&index).map(|l| l.name.clone())) else {
            return;
        };
        let flags = msg.header.flags;
        let usable = msg.header.link_layer_type == LinkLayerType::Ether
            && flags.contains(LinkFlags::Up | LinkFlags::LowerUp)
            && !flags.contains(LinkFlags::Loopback);
        self.links.insert(index, LinkState { name, usable });
    }

    /// Names of the usable links.
    pub fn usable(&self) -> BTreeSet<String> {
        self.links
            .values()
            .filter(|l| l.usable)
            .map(|l| l.name.clone())
            .collect()
    }
}

/// Handle of the link watcher task; dropping it stops the task.
#[derive(Debug)]
pub struct LinkWatcher {
    links: watch::Receiver<BTreeSet<String>>,
    task: JoinHandle<()>,
}

impl LinkWatcher {
    /// Subscribes to link events, dumps the current links and starts following them, on the
    /// current tokio runtime (in the caller's network namespace).
    pub async fn spawn() -> Result<Self, L2Error> {
        let err = |e: &dyn std::fmt::Display| L2Error::Netlink(e.to_string());
        let (mut connection, handle, mut messages) =
            rtnetlink::new_connection().map_err(|e| err(&e))?;
        connection
            .socket_mut()
            .socket_mut()
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(|e| err(&e))?;
        let conn_task = tokio::spawn(connection);
        let mut table = LinkTable::default();
        let mut dump = handle.link().get().execute();
        while let Some(msg) = dump.try_next().await.map_err(|e| err(&e))? {
            table.apply(&msg, false);
        }
        let (tx, links) = watch::channel(table.usable());
        let task = tokio::spawn(async move {
            let _conn = AbortOnDrop(conn_task);
            // Keep the handle: dropping it would close the request side of the connection.
            let _handle = handle;
            while let Some((msg, _)) = messages.next().await {
                match msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                        table.apply(&m, false);
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                        table.apply(&m, true);
                    }
                    _ => continue,
                }
                let usable = table.usable();
                tx.send_if_modified(|current| {
                    let changed = *current != usable;
                    *current = usable;
                    changed
                });
            }
        });
        Ok(LinkWatcher { links, task })
    }

    /// The usable links, updated on every change.
    pub fn links(&self) -> watch::Receiver<BTreeSet<String>> {
        self.links.clone()
    }
}

impl Drop for LinkWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(index: u32, name: Option<&str>, flags: LinkFlags, kind: LinkLayerType) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.header.link_layer_type = kind;
        if let Some(n) = name {
            m.attributes.push(LinkAttribute::IfName(n.to_owned()));
        }
        m
    }

    #[test]
    fn only_ethernet_links_up_with_carrier_are_usable() {
        let up = LinkFlags::Up | LinkFlags::LowerUp;
        let mut t = LinkTable::default();
        t.apply(
            &msg(
                1,
                Some("lo"),
                up | LinkFlags::Loopback,
                LinkLayerType::Loopback,
            ),
            false,
        );
        t.apply(&msg(2, Some("eth0"), up, LinkLayerType::Ether), false);
        t.apply(
            &msg(3, Some("eth1"), LinkFlags::Up, LinkLayerType::Ether),
            false,
        );
        t.apply(
            &msg(4, Some("eth2"), LinkFlags::LowerUp, LinkLayerType::Ether),
            false,
        );
        assert_eq!(t.usable(), ["eth0".to_string()].into());
    }

    #[test]
    fn losing_carrier_or_deletion_removes_the_link() {
        let up = LinkFlags::Up | LinkFlags::LowerUp;
        let mut t = LinkTable::default();
        t.apply(&msg(2, Some("eth0"), up, LinkLayerType::Ether), false);
        t.apply(&msg(3, Some("eth1"), up, LinkLayerType::Ether), false);
        // Events may omit the name; the index identifies the link.
        t.apply(&msg(2, None, LinkFlags::Up, LinkLayerType::Ether), false);
        assert_eq!(t.usable(), ["eth1".to_string()].into());
        t.apply(&msg(2, None, up, LinkLayerType::Ether), false);
        t.apply(&msg(3, None, up, LinkLayerType::Ether), true);
        assert_eq!(t.usable(), ["eth0".to_string()].into());
    }
}
