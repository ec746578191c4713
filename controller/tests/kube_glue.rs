//! The kube glue against a scripted API server: one test per call sequence.

mod apiserver;

use std::net::IpAddr;

use apiserver::{annotate, context, created, ingress_ips, list, pair, pool, service, with_status};
use herald_controller::context::Context;
use herald_controller::error::Error;
use herald_controller::pools::{on_pools_changed, write_dirty_pools};
use herald_controller::reconcile::RETRY_FAILED;
use herald_controller::restore::restore_all;
use herald_ipam::ServiceKey;
use herald_ipam::convert;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::Action;
use std::sync::Arc;

const STATUS: &str = "/api/v1/namespaces/default/services";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const POOLS: &str = "/apis/herald.dev/v1alpha1/ippools";

// The reconcilers only mark the pools they touch; the status writer writes them a moment
// later. These run one and then the writer's flush, the order the writes reach a server in.

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let action = herald_controller::reconcile::reconcile(svc, ctx.clone()).await;
    write_dirty_pools(&ctx).await;
    action
}

async fn on_deleted(key: ServiceKey, ctx: &Context) {
    herald_controller::reconcile::on_deleted(key, ctx).await;
    write_dirty_pools(ctx).await;
}

async fn sweep(ctx: &Context) -> usize {
    let released = herald_controller::reconcile::sweep(ctx).await;
    write_dirty_pools(ctx).await;
    released
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Gives `svc` its address directly through the allocator (the state a previous reconcile
/// left), and puts it in the Service cache.
fn hold(ctx: &herald_controller::context::Context, svc: &k8s_openapi::api::core::v1::Service) {
    let input = convert::service(svc, &Default::default()).unwrap();
    ctx.allocator().assign(input).unwrap();
}

#[tokio::test]
async fn allocates_the_first_free_address_and_writes_status_annotation_event_and_pool_status() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    let svc = service("web", 80);

    let script = async {
        let ann = server.expect("PATCH", &format!("{STATUS}/web")).await;
        assert!(
            ann.uri.contains("fieldManager=herald-controller"),
            "{}",
            ann.uri
        );
        assert!(ann.uri.contains("force=true"), "{}", ann.uri);
        assert_eq!(
            ann.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(
            ann.body["metadata"]["annotations"]["herald.dev/allocated-from"],
            "pool-a"
        );
        assert!(
            ann.body.get("spec").is_none(),
            "only the annotation is applied"
        );

        let st = server
            .expect("PATCH", &format!("{STATUS}/web/status"))
            .await;
        assert!(
            st.uri.contains("fieldManager=herald-controller"),
            "{}",
            st.uri
        );
        assert_eq!(ingress_ips(&st.body), ["10.0.0.10"]);
        // Fields newer than the oldest supported server are never sent.
        assert!(
            st.body["status"]["loadBalancer"]["ingress"][0]
                .get("ipMode")
                .is_none()
        );

        let ev = server.expect("POST", EVENTS).await;
        assert_eq!(ev.body["reason"], "AddressAllocated");
        assert_eq!(ev.body["type"], "Normal");
        assert_eq!(ev.body["note"], "allocated 10.0.0.10 from pool pool-a");
        assert_eq!(ev.body["regarding"]["name"], "web");

        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-a/status"))
            .await;
        assert_eq!(ps.body["status"]["assignedIPv4"], 1);
        assert_eq!(ps.body["status"]["availableIPv4"], 1);
        assert_eq!(ps.body["status"]["availableIPv6"], "0");
        assert_eq!(ps.body["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(ps.body["status"]["conditions"][0]["status"], "True");
        assert_eq!(ps.body["status"]["conditions"][1]["type"], "Conflicting");
        assert_eq!(ps.body["status"]["conditions"][1]["status"], "False");
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(svc), ctx.clone()), script);
    assert_eq!(action.unwrap(), Action::await_change());
    let held = ctx
        .allocator()
        .assignment(&ServiceKey::new("default", "web"))
        .unwrap()
        .addresses();
    assert_eq!(held, [ip("10.0.0.10")]);
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn reconciling_a_service_whose_status_already_shows_its_address_writes_nothing() {
    let (client, server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    let svc = annotate(
        with_status(service("web", 80), &["10.0.0.10"]),
        "herald.dev/allocated-from",
        "pool-a",
    );
    hold(&ctx, &svc);
    // The pool already shows the counts.
    let mut shown = pool("pool-a", &["10.0.0.10-10.0.0.11"], "1");
    shown.status = Some(herald_controller::status::pool_status(
        ctx.allocator().counts("pool-a").unwrap(),
        &herald_controller::status::Readiness::Ready,
        &[],
        Some(1),
        None,
        k8s_openapi::jiff::Timestamp::now(),
    ));
    caches.pool(shown);
    let action = reconcile(Arc::new(svc), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn a_requested_address_held_by_another_service_fails_with_a_warning_naming_the_holder() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    hold(&ctx, &with_status(service("web", 80), &["10.0.0.10"]));
    let db = annotate(
        service("db", 5432),
        "herald.dev/load-balancer-ips",
        "10.0.0.10",
    );

    let script = async {
        // Nothing held, nothing in status: no status or annotation write, only the Event.
        let ev = server.expect("POST", EVENTS).await;
        assert_eq!(ev.body["type"], "Warning");
        assert_eq!(ev.body["reason"], "AllocationFailed");
        assert_eq!(
            ev.body["note"],
            "10.0.0.10 is in use by default/web and not shared"
        );
        assert_eq!(ev.body["regarding"]["name"], "db");
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(db), ctx.clone()), script);
    assert_eq!(action.unwrap(), Action::requeue(RETRY_FAILED));
    assert_eq!(
        ctx.allocator().holders(ip("10.0.0.10")),
        [ServiceKey::new("default", "web")]
    );
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn services_with_one_sharing_key_and_distinct_ports_share_an_address() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    let web = annotate(service("web", 80), "herald.dev/sharing-key", "front");
    hold(&ctx, &web);
    let api = annotate(service("api", 443), "herald.dev/sharing-key", "front");

    let script = async {
        let ann = server.expect("PATCH", &format!("{STATUS}/api")).await;
        assert_eq!(
            ann.body["metadata"]["annotations"]["herald.dev/allocated-from"],
            "pool-a"
        );
        let st = server
            .expect("PATCH", &format!("{STATUS}/api/status"))
            .await;
        assert_eq!(ingress_ips(&st.body), ["10.0.0.10"]);
        let ev = server.expect("POST", EVENTS).await;
        assert_eq!(ev.body["reason"], "AddressAllocated");
        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-a/status"))
            .await;
        // A shared address counts once.
        assert_eq!(ps.body["status"]["assignedIPv4"], 1);
        assert_eq!(ps.body["status"]["availableIPv4"], 1);
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(api), ctx.clone()), script);
    action.unwrap();
    assert_eq!(
        ctx.allocator().holders(ip("10.0.0.10")),
        [
            ServiceKey::new("default", "api"),
            ServiceKey::new("default", "web")
        ]
    );
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn a_deleted_service_releases_its_address_and_the_pool_status_counts_it_free() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    hold(&ctx, &service("web", 80));

    let script = async {
        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-a/status"))
            .await;
        assert_eq!(ps.body["status"]["assignedIPv4"], 0);
        assert_eq!(ps.body["status"]["availableIPv4"], 2);
    };
    tokio::join!(on_deleted(ServiceKey::new("default", "web"), &ctx), script);
    assert!(ctx.allocator().holders(ip("10.0.0.10")).is_empty());
    assert!(
        ctx.allocator()
            .assignment(&ServiceKey::new("default", "web"))
            .is_none()
    );
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn the_sweep_releases_services_deleted_while_unwatched_and_keeps_cached_ones() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    let kept = service("kept", 80);
    hold(&ctx, &kept);
    caches.service(&kept);
    hold(&ctx, &service("gone", 81));

    let script = async {
        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-a/status"))
            .await;
        assert_eq!(ps.body["status"]["assignedIPv4"], 1);
    };
    let (released, ()) = tokio::join!(sweep(&ctx), script);
    assert_eq!(released, 1);
    assert_eq!(
        ctx.allocator().holders(ip("10.0.0.10")),
        [ServiceKey::new("default", "kept")]
    );
    assert!(ctx.allocator().holders(ip("10.0.0.11")).is_empty());
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn a_service_that_stops_being_a_load_balancer_is_released_and_its_status_cleared() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    let web = annotate(
        with_status(service("web", 80), &["10.0.0.10"]),
        "herald.dev/allocated-from",
        "pool-a",
    );
    hold(&ctx, &web);
    let mut now_cluster_ip = web.clone();
    now_cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".to_owned());

    let script = async {
        let ann = server.expect("PATCH", &format!("{STATUS}/web")).await;
        // Applying metadata without the annotation gives it up: the server removes it.
        assert!(
            ann.body["metadata"].get("annotations").is_none(),
            "{}",
            ann.body
        );
        let st = server
            .expect("PATCH", &format!("{STATUS}/web/status"))
            .await;
        assert_eq!(st.body["status"]["loadBalancer"], serde_json::json!({}));
        let ev = server.expect("POST", EVENTS).await;
        assert_eq!(ev.body["reason"], "AddressReleased");
        assert_eq!(ev.body["note"], "released 10.0.0.10");
        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-a/status"))
            .await;
        assert_eq!(ps.body["status"]["assignedIPv4"], 0);
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(now_cluster_ip), ctx.clone()), script);
    action.unwrap();
    assert!(ctx.allocator().holders(ip("10.0.0.10")).is_empty());
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn changing_the_requested_address_moves_the_service_to_it_and_frees_the_old_one() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    let web = annotate(
        with_status(service("web", 80), &["10.0.0.10"]),
        "herald.dev/allocated-from",
        "pool-a",
    );
    hold(&ctx, &web);
    let asks = annotate(web, "herald.dev/load-balancer-ips", "10.0.0.11");

    let script = async {
        // Same pool: the annotation stays as it is; only the status changes.
        let st = server
            .expect("PATCH", &format!("{STATUS}/web/status"))
            .await;
        assert_eq!(ingress_ips(&st.body), ["10.0.0.11"]);
        let ev = server.expect("POST", EVENTS).await;
        assert_eq!(ev.body["note"], "allocated 10.0.0.11 from pool pool-a");
        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-a/status"))
            .await;
        assert_eq!(ps.body["status"]["assignedIPv4"], 1);
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(asks), ctx.clone()), script);
    action.unwrap();
    assert!(ctx.allocator().holders(ip("10.0.0.10")).is_empty());
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn an_invalid_pool_is_reported_not_ready_naming_the_field() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("broken", &["10.0.0.300"], "1"));
    let script = async {
        let ps = server
            .expect("PATCH", &format!("{POOLS}/broken/status"))
            .await;
        let ready = &ps.body["status"]["conditions"][0];
        assert_eq!(ready["type"], "Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "Invalid");
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("spec.addresses[0]"),
            "{ready}"
        );
    };
    let (requeue, ()) = tokio::join!(on_pools_changed(&ctx), script);
    assert!(requeue.is_empty());
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn restore_holds_every_status_address_before_a_new_service_is_allocated() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.12"], "1"));
    // `late` claims what the older `early` holds: the older keeps it.
    let early = created(
        with_status(service("early", 80), &["10.0.0.10"]),
        1_600_000_000,
    );
    let late = created(
        with_status(service("late", 81), &["10.0.0.10"]),
        1_700_000_000,
    );
    let other = created(
        with_status(service("other", 82), &["10.0.0.11"]),
        1_650_000_000,
    );
    let not_lb = {
        let mut s = with_status(service("plain", 83), &["10.0.0.12"]);
        s.spec.as_mut().unwrap().type_ = Some("ClusterIP".to_owned());
        s
    };

    let script = async {
        let items = [late.clone(), other.clone(), not_lb, early.clone()];
        server
            .expect_with(
                "GET",
                "/api/v1/services",
                200,
                list("ServiceList", "v1", &items),
            )
            .await;
        let ev = server.expect("POST", EVENTS).await;
        assert_eq!(ev.body["reason"], "AddressConflict");
        assert_eq!(ev.body["regarding"]["name"], "late");
        assert_eq!(
            ev.body["note"],
            "10.0.0.10 is in use by default/early and not shared"
        );
    };
    let (restored, ()) = tokio::join!(restore_all(&ctx), script);
    let restored = restored.unwrap();
    assert_eq!((restored.services, restored.conflicts), (3, 1));
    assert_eq!(
        ctx.allocator().holders(ip("10.0.0.10")),
        [ServiceKey::new("default", "early")]
    );
    assert_eq!(
        ctx.allocator().holders(ip("10.0.0.11")),
        [ServiceKey::new("default", "other")]
    );

    // A new Service now gets the one address nobody's status shows.
    let fresh = service("fresh", 80);
    let script = async {
        server.expect("PATCH", &format!("{STATUS}/fresh")).await;
        let st = server
            .expect("PATCH", &format!("{STATUS}/fresh/status"))
            .await;
        assert_eq!(ingress_ips(&st.body), ["10.0.0.12"]);
        server.expect("POST", EVENTS).await;
        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-a/status"))
            .await;
        assert_eq!(ps.body["status"]["assignedIPv4"], 3);
        assert_eq!(ps.body["status"]["availableIPv4"], 0);
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(fresh), ctx.clone()), script);
    action.unwrap();
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn deleting_a_pool_reports_its_services_as_conflicts_and_never_moves_their_addresses() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    let pool_a = pool("pool-a", &["10.0.0.10-10.0.0.11"], "1");
    caches.pool(pool_a.clone());
    caches.pool(pool("pool-b", &["10.0.1.10-10.0.1.11"], "1"));
    ctx.sync_pools();
    let web = annotate(
        with_status(service("web", 80), &["10.0.0.10"]),
        "herald.dev/allocated-from",
        "pool-a",
    );
    hold(&ctx, &web);
    caches.service(&web);
    caches.delete_pool(pool_a);

    let script = async {
        let ev = server.expect("POST", EVENTS).await;
        assert_eq!(ev.body["type"], "Warning");
        assert_eq!(ev.body["reason"], "AddressConflict");
        assert_eq!(ev.body["regarding"]["name"], "web");
        assert!(
            ev.body["note"].as_str().unwrap().contains("10.0.0.10"),
            "{}",
            ev.body["note"]
        );
        // The remaining pool's status; the deleted pool has none to write.
        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-b/status"))
            .await;
        assert_eq!(ps.body["status"]["availableIPv4"], 2);
    };
    let (requeue, ()) = tokio::join!(on_pools_changed(&ctx), script);
    assert_eq!(requeue.len(), 1);
    assert_eq!(requeue[0].name, "web");
    // The re-queued reconcile leaves the status alone (no write) and does not repeat the Event.
    let action = reconcile(Arc::new(web), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(
        ctx.allocator().holders(ip("10.0.0.10")),
        [ServiceKey::new("default", "web")]
    );
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn shrinking_a_pool_marks_it_conflicting_naming_the_service_outside_it() {
    let (client, mut server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    let web = annotate(
        with_status(service("web", 80), &["10.0.0.10"]),
        "herald.dev/allocated-from",
        "pool-a",
    );
    hold(&ctx, &web);
    caches.service(&web);
    caches.pool(pool("pool-a", &["10.0.0.11"], "2"));

    let script = async {
        let ev = server.expect("POST", EVENTS).await;
        assert_eq!(ev.body["reason"], "AddressConflict");
        let ps = server
            .expect("PATCH", &format!("{POOLS}/pool-a/status"))
            .await;
        let conflicting = &ps.body["status"]["conditions"][1];
        assert_eq!(conflicting["type"], "Conflicting");
        assert_eq!(conflicting["status"], "True");
        assert!(
            conflicting["message"]
                .as_str()
                .unwrap()
                .contains("default/web"),
            "{conflicting}"
        );
        // 10.0.0.10 is outside the pool now: not counted as the pool's.
        assert_eq!(ps.body["status"]["assignedIPv4"], 0);
        assert_eq!(ps.body["status"]["availableIPv4"], 1);
    };
    let (requeue, ()) = tokio::join!(on_pools_changed(&ctx), script);
    assert_eq!(requeue.len(), 1);
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn a_replica_that_lost_leadership_writes_nothing_and_forgets_its_assignments() {
    let (client, server) = pair();
    let (ctx, mut caches) = context(client);
    caches.pool(pool("pool-a", &["10.0.0.10-10.0.0.11"], "1"));
    ctx.sync_pools();
    hold(&ctx, &service("web", 80));
    ctx.set_leader(false);
    assert!(ctx.allocator().assignments().is_empty());
    let action = reconcile(Arc::new(service("new", 80)), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    on_deleted(ServiceKey::new("default", "web"), &ctx).await;
    assert!(on_pools_changed(&ctx).await.is_empty());
    drop(ctx);
    server.done().await;
}

mod election {
    use std::time::Duration;

    use herald_controller::election::{Elector, Timing};
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use kube::Api;
    use serde_json::{Value, json};

    use super::apiserver::pair;

    const LEASE: &str =
        "/apis/coordination.k8s.io/v1/namespaces/herald-system/leases/herald-controller";

    fn lease(holder: &str, renewed: Timestamp, transitions: i32) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": "herald-controller", "namespace": "herald-system", "resourceVersion": "7" },
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 15,
                "acquireTime": renewed.to_string(),
                "renewTime": renewed.to_string(),
                "leaseTransitions": transitions,
            }
        })
    }

    fn elector(client: kube::Client) -> Elector {
        Elector::new(
            Api::namespaced(client, "herald-system"),
            "herald-controller",
            "controller-0",
            Timing {
                lease_duration: Duration::from_secs(15),
                retry_period: Duration::from_secs(2),
            },
        )
    }

    #[tokio::test]
    async fn a_leader_whose_renewal_is_refused_steps_down() {
        let (client, mut server) = pair();
        let e = elector(client);
        let script = async {
            server
                .expect_with(
                    "GET",
                    LEASE,
                    200,
                    lease("controller-0", Timestamp::now(), 2),
                )
                .await;
            let put = server
                .expect_with(
                    "PUT",
                    LEASE,
                    409,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
                )
                .await;
            // The write is conditional on what was read.
            assert_eq!(put.body["metadata"]["resourceVersion"], "7");
            assert_eq!(put.body["spec"]["holderIdentity"], "controller-0");
            // Renewing keeps the transition count.
            assert_eq!(put.body["spec"]["leaseTransitions"], 2);
        };
        let (leading, ()) = tokio::join!(e.step(), script);
        assert!(!leading);
        drop(e);
        server.done().await;
    }

    #[tokio::test]
    async fn a_follower_leaves_a_live_lease_alone() {
        let (client, mut server) = pair();
        let e = elector(client);
        let script = async {
            server
                .expect_with(
                    "GET",
                    LEASE,
                    200,
                    lease("controller-1", Timestamp::now(), 2),
                )
                .await;
        };
        let (leading, ()) = tokio::join!(e.step(), script);
        assert!(!leading);
        drop(e);
        server.done().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_takes_over_a_lease_it_has_seen_unrenewed_for_a_lease_duration() {
        let (client, mut server) = pair();
        let e = elector(client);
        // The holder's renewTime is an hour old by this replica's wall clock, but clocks of
        // two nodes may disagree: a Lease first read now is live for one lease duration.
        let stale = Timestamp::now() - SignedDuration::from_secs(3600);
        let script = async {
            server
                .expect_with("GET", LEASE, 200, lease("controller-1", stale, 2))
                .await;
        };
        let (leading, ()) = tokio::join!(e.step(), script);
        assert!(!leading, "took a Lease it had not seen unrenewed for 15 s");
        tokio::time::advance(Duration::from_secs(15)).await;
        let script = async {
            server
                .expect_with("GET", LEASE, 200, lease("controller-1", stale, 2))
                .await;
            let put = server.expect("PUT", LEASE).await;
            assert_eq!(put.body["metadata"]["resourceVersion"], "7");
            assert_eq!(put.body["spec"]["holderIdentity"], "controller-0");
            assert_eq!(put.body["spec"]["leaseTransitions"], 3);
            assert_ne!(put.body["spec"]["renewTime"], json!(stale.to_string()));
        };
        let (leading, ()) = tokio::join!(e.step(), script);
        assert!(leading);
        drop(e);
        server.done().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_election_loop_reports_leadership_and_its_loss_then_releases_on_shutdown() {
        let (client, mut server) = pair();
        let e = elector(client);
        let (leading_tx, mut leading) = tokio::sync::watch::channel(false);
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(e.run(leading_tx, shutdown));

        // Round 1: it holds the Lease and renews it.
        server
            .expect_with(
                "GET",
                LEASE,
                200,
                lease("controller-0", Timestamp::now(), 0),
            )
            .await;
        server.expect("PUT", LEASE).await;
        leading.wait_for(|l| *l).await.unwrap();
        // Round 2 (one retry period later, paused time): another replica took it.
        server
            .expect_with(
                "GET",
                LEASE,
                200,
                lease("controller-1", Timestamp::now(), 1),
            )
            .await;
        leading.wait_for(|l| !*l).await.unwrap();
        // Rounds 3 to 11: the other stopped renewing; after it has been seen unchanged for
        // the lease duration (rounds every 2 s: the ninth read is 16 s after the first),
        // this one takes it back. Then shutdown gives it up.
        let stale = Timestamp::now() - SignedDuration::from_secs(60);
        for _ in 0..9 {
            assert!(!*leading.borrow(), "took the Lease before it expired");
            server
                .expect_with("GET", LEASE, 200, lease("controller-1", stale, 1))
                .await;
        }
        server.expect("PUT", LEASE).await;
        leading.wait_for(|l| *l).await.unwrap();
        shutdown_tx.send(true).unwrap();
        server
            .expect_with(
                "GET",
                LEASE,
                200,
                lease("controller-0", Timestamp::now(), 2),
            )
            .await;
        let release = server.expect("PUT", LEASE).await;
        assert!(
            release.body["spec"].get("holderIdentity").is_none(),
            "{}",
            release.body
        );
        task.await.unwrap();
        assert!(!*leading.borrow());
        server.done().await;
    }

    #[tokio::test]
    async fn the_first_replica_creates_the_missing_lease_and_leads() {
        let (client, mut server) = pair();
        let e = elector(client);
        let script = async {
            server
                .expect_with(
                    "GET",
                    LEASE,
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"}),
                )
                .await;
            let post = server
                .expect(
                    "POST",
                    "/apis/coordination.k8s.io/v1/namespaces/herald-system/leases",
                )
                .await;
            assert_eq!(post.body["spec"]["holderIdentity"], "controller-0");
            assert_eq!(post.body["spec"]["leaseDurationSeconds"], 15);
        };
        let (leading, ()) = tokio::join!(e.step(), script);
        assert!(leading);
        drop(e);
        server.done().await;
    }
}

mod admin {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use herald_controller::admin::{Shared, bind};
    use herald_controller::metrics::Metrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn admin_http_serves_health_readiness_once_caches_fill_and_metrics() {
        let metrics = Arc::new(Metrics::new());
        let ready = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            metrics: metrics.clone(),
            ready: ready.clone(),
        };
        let (addr, serve) = bind("127.0.0.1:0".parse().unwrap(), shared).await.unwrap();
        let server = tokio::spawn(serve);
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.0 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.0 503"));
        ready.store(true, Ordering::Release);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.0 200"));
        metrics.leader.set(1);
        let body = get(addr, "/metrics").await;
        assert!(body.contains("herald_controller_leader 1"), "{body}");
        assert!(body.contains("herald_controller_conflicts 0"), "{body}");
        server.abort();
    }
}

mod dashboard {
    use herald_controller::metrics::{KindLabel, Metrics, PoolLabels, ResultLabel};

    /// Every controller metric the Grafana dashboard queries is one the controller exports.
    #[test]
    fn the_dashboard_queries_only_metrics_the_controller_exports() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/herald.json");
        let text = std::fs::read_to_string(path).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
        let m = Metrics::new();
        m.reconciles
            .get_or_create(&ResultLabel { result: "assigned" })
            .inc();
        m.reconcile_errors
            .get_or_create(&KindLabel { kind: "api" })
            .inc();
        let pool = PoolLabels {
            pool: "p".into(),
            family: "ipv4",
        };
        m.pool_assigned.get_or_create(&pool).set(1.0);
        m.pool_available.get_or_create(&pool).set(1.0);
        let exported = m.encode();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("herald_controller_") || word.starts_with("herald_pool_") {
                        assert!(exported.contains(word), "{word} is not exported");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 8, "only {checked} controller metrics checked");
    }
}
