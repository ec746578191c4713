//! The kube glue: every object of each kind the report reads, by paginated lists.
//!
//! Lists ask for [`PAGE`] objects at a time and follow `metadata.continue`, so that a
//! cluster with thousands of Services is read in bounded responses. A kind the API server
//! refuses (403 for a user without the `herald-viewer` role, 404 when a CRD is not
//! installed) becomes [`Listed::Unreadable`], a note in the report; only failing to talk to
//! the server at all is an [`Error`].

use std::fmt::Debug;

use herald_api::{BFDProfile, BGPAdvertisement, BGPPeer, HeraldNode, IPPool, L2Advertisement};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::inputs::{Inputs, Listed};

/// Objects per list request.
pub const PAGE: u32 = 500;

/// Reads every kind the report needs, the lists running concurrently.
pub async fn inputs(client: &Client) -> Result<Inputs, Error> {
    let (services, nodes, pools, peers, bgp_advertisements, l2_advertisements, bfd_profiles) = tokio::join!(
        listed::<Service>(Api::all(client.clone()), "Services"),
        listed::<HeraldNode>(Api::all(client.clone()), "HeraldNodes"),
        listed::<IPPool>(Api::all(client.clone()), "IPPools"),
        listed::<BGPPeer>(Api::all(client.clone()), "BGPPeers"),
        listed::<BGPAdvertisement>(Api::all(client.clone()), "BGPAdvertisements"),
        listed::<L2Advertisement>(Api::all(client.clone()), "L2Advertisements"),
        listed::<BFDProfile>(Api::all(client.clone()), "BFDProfiles"),
    );
    Ok(Inputs {
        services: services?,
        nodes: nodes?,
        pools: pools?,
        peers: peers?,
        bgp_advertisements: bgp_advertisements?,
        l2_advertisements: l2_advertisements?,
        bfd_profiles: bfd_profiles?,
    })
}

/// Every object of `api`'s kind, or why the API server would not list them.
pub async fn listed<K>(api: Api<K>, kind: &'static str) -> Result<Listed<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match list_all(&api).await {
        Ok(items) => Ok(Listed::Items(items)),
        Err(kube::Error::Api(status)) => {
            let mut why = format!("{} {}", status.code, status.reason);
            if !status.message.is_empty() {
                why.push_str(&format!(": {}", status.message));
            }
            Ok(Listed::Unreadable(why))
        }
        Err(source) => Err(Error::List { kind, source }),
    }
}

/// Every object, [`PAGE`] at a time. A continue token that expired between pages (410
/// Gone: the server compacted the revision the list started at) restarts the list once.
pub async fn list_all<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut restarted = false;
    'list: loop {
        let mut items = Vec::new();
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(kube::Error::Api(s))
                    if s.code == 410 && params.continue_token.is_some() && !restarted =>
                {
                    restarted = true;
                    continue 'list;
                }
                Err(e) => return Err(e),
            };
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(items),
            }
        }
    }
}
