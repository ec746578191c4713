//! Standalone persistence and the embedded allocator: nothing is lost, moves are reported.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use herald_api::standalone;
use herald_speaker::standalone::allocate::Embedded;
use herald_speaker::standalone::state::{self, State};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn st(entries: &[(&str, &[&str])]) -> State {
    State {
        services: entries
            .iter()
            .map(|(k, a)| (k.to_string(), a.iter().map(|s| ip(s)).collect()))
            .collect(),
    }
}

#[test]
fn saved_state_loads_back_and_previous_generation_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        st(&[("ns/a", &["192.0.2.1"])]),
        st(&[("ns/a", &["192.0.2.1"]), ("ns/b", &["2001:db8::1"])]),
    );
    state::save(dir.path(), &first).unwrap();
    state::save(dir.path(), &second).unwrap();
    let (loaded, report) = state::load(dir.path()).unwrap();
    assert_eq!(loaded, second);
    assert!(report.moved_aside.is_none() && !report.used_previous);
    assert!(!dir.path().join("assignments.json.tmp").exists());
    // The previous generation is what the first save wrote.
    fs::remove_file(dir.path().join("assignments.json")).unwrap();
    let (prev, report) = state::load(dir.path()).unwrap();
    assert_eq!(prev, first);
    assert!(report.used_previous);
}

#[test]
fn missing_state_is_empty_and_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("nested/state");
    let (loaded, report) = state::load(&sub).unwrap();
    assert_eq!(loaded, State::default());
    assert!(report.moved_aside.is_none() && !report.used_previous);
    assert!(sub.is_dir());
}

fn corrupt_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("assignments.json.corrupt-"))
        .collect()
}

#[test]
fn corrupt_state_is_moved_aside_and_the_previous_generation_used() {
    let dir = tempfile::tempdir().unwrap();
    let good = st(&[("ns/a", &["192.0.2.1"])]);
    state::save(dir.path(), &good).unwrap();
    state::save(dir.path(), &st(&[("ns/a", &["192.0.2.9"])])).unwrap();
    let torn = br#"{"version": 1, "services": [{"service": "ns/a", "addre"#;
    fs::write(dir.path().join("assignments.json"), torn).unwrap();
    let (loaded, report) = state::load(dir.path()).unwrap();
    assert_eq!(loaded, good, "falls back to the previous generation");
    assert!(report.used_previous);
    let (aside, err) = report.moved_aside.expect("reported");
    assert!(err.to_string().contains("assignments.json"), "{err}");
    assert_eq!(fs::read(&aside).unwrap(), torn, "kept byte for byte");
    assert_eq!(corrupt_files(dir.path()).len(), 1);
}

#[test]
fn corrupt_state_without_previous_gives_empty_state_but_keeps_the_file() {
    for (bad, why) in [
        (&br#"{"version": 2, "services": []}"#[..], "version 2"),
        (br#"{"version": 1, "services": [{"service": "a/b", "addresses": []}, {"service": "a/b", "addresses": []}]}"#, "twice"),
        (b"\x00\x01garbage", ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("assignments.json"), bad).unwrap();
        let (loaded, report) = state::load(dir.path()).unwrap();
        assert_eq!(loaded, State::default());
        let (aside, err) = report.moved_aside.expect("reported");
        assert!(err.to_string().contains(why), "{err}");
        assert_eq!(fs::read(aside).unwrap(), bad);
    }
}

#[test]
fn a_leftover_temporary_file_does_not_affect_loading() {
    let dir = tempfile::tempdir().unwrap();
    let good = st(&[("ns/a", &["192.0.2.1"])]);
    state::save(dir.path(), &good).unwrap();
    fs::write(dir.path().join("assignments.json.tmp"), b"{half").unwrap();
    assert_eq!(state::load(dir.path()).unwrap().0, good);
    state::save(dir.path(), &good).unwrap();
    assert_eq!(state::load(dir.path()).unwrap().0, good);
}

const POOL: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [192.0.2.0/29]}
"#;

fn svc(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

fn config(docs: &[String]) -> standalone::StandaloneConfig {
    let text = format!("{POOL}{}", docs.concat());
    standalone::load_str(Path::new("lb.yaml"), &text).unwrap()
}

fn addr_of(o: &herald_speaker::standalone::allocate::Outcome, key: &str) -> IpAddr {
    o.assigned[key][0].0
}

#[test]
fn addresses_survive_restart_even_when_config_order_changes() {
    let mut first = Embedded::new(State::default());
    let o1 = first.apply(&config(&[svc("a"), svc("b")])).unwrap();
    assert!(o1.errors.is_empty(), "{:?}", o1.errors);
    let (a, b) = (addr_of(&o1, "ns/a"), addr_of(&o1, "ns/b"));
    assert_ne!(a, b);

    // A restart (the state is not needed for this: the placement follows the config) with
    // the Services listed in another order.
    let mut second = Embedded::new(State::default());
    let o2 = second.apply(&config(&[svc("b"), svc("a")])).unwrap();
    assert_eq!(o2.assigned, o1.assigned);
    assert!(o2.moved.is_empty());
    assert_eq!(
        o2.state
            .services
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["ns/a", "ns/b"],
        "persisted sorted by Service"
    );
    assert_eq!(o2.counts["public"].v4.assigned, 2);
}

#[test]
fn a_removed_service_releases_its_address_and_others_stay() {
    let mut e = Embedded::new(State::default());
    let o1 = e.apply(&config(&[svc("a"), svc("b")])).unwrap();
    let o2 = e.apply(&config(&[svc("b")])).unwrap();
    assert!(!o2.assigned.contains_key("ns/a"));
    assert_eq!(addr_of(&o2, "ns/b"), addr_of(&o1, "ns/b"));
    assert_eq!(o2.state.services.len(), 1);
    assert_eq!(o2.counts["public"].v4.assigned, 1);
}

#[test]
fn a_persisted_address_the_placement_does_not_give_is_reported_as_moved() {
    // Written by an older version (or before the file changed): the state does not decide,
    // it only tells what moved.
    let state = st(&[("ns/a", &["198.51.100.7"]), ("ns/gone", &["192.0.2.1"])]);
    let mut e = Embedded::new(state);
    let o = e.apply(&config(&[svc("a")])).unwrap();
    let a = addr_of(&o, "ns/a");
    assert!(o.errors.is_empty(), "{:?}", o.errors);
    assert_eq!(
        o.moved,
        vec![herald_speaker::standalone::allocate::Moved {
            service: "ns/a".into(),
            from: vec![ip("198.51.100.7")],
            to: vec![a],
        }],
        "a Service no longer configured is not a move"
    );
    assert_eq!(o.state.services, vec![("ns/a".to_string(), vec![a])]);
    // Compared with the previous apply from now on: nothing moves again.
    assert!(e.apply(&config(&[svc("a")])).unwrap().moved.is_empty());
}

#[test]
fn an_unconvertible_config_is_refused_and_changes_nothing() {
    let mut e = Embedded::new(State::default());
    let good = e.apply(&config(&[svc("a")])).unwrap();
    let mut bad = config(&[svc("a"), svc("b")]);
    std::sync::Arc::make_mut(&mut bad.services[1])
        .spec
        .as_mut()
        .unwrap()
        .external_traffic_policy = Some("Nearest".into());
    let errs = e.apply(&bad).unwrap_err();
    assert!(errs[0].to_string().contains("ns/b"), "{}", errs[0]);
    assert!(
        errs[0].to_string().contains("spec.externalTrafficPolicy"),
        "{}",
        errs[0]
    );
    let again = e.apply(&config(&[svc("a")])).unwrap();
    assert_eq!(again, good);
}
