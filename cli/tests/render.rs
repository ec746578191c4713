//! The text and JSON renderings of fixture reports, compared with files under
//! tests/fixtures/. After changing the output on purpose:
//! `HERALD_BLESS=1 cargo test -p herald-cli --test render`, review and commit the fixtures.

mod common;

use std::path::PathBuf;

use common::*;
use herald_cli::inputs::{Inputs, Listed};
use herald_cli::render;
use herald_cli::report::build;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Compares `got` with the fixture `name`, or writes it when `HERALD_BLESS` is set.
fn check(name: &str, got: &str) {
    let path = fixture(name);
    if std::env::var_os("HERALD_BLESS").is_some() {
        std::fs::write(&path, got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got == want,
        "{name} differs from the rendering; if the change is meant, run \
         `HERALD_BLESS=1 cargo test -p herald-cli --test render` and commit.\n--- want\n{want}\n--- got\n{got}"
    );
}

#[test]
fn the_text_report_lists_problems_first_in_aligned_columns() {
    check("cluster.txt", &render::text(&build(&cluster())));
}

#[test]
fn the_json_report_is_the_report_struct() {
    let json = render::json(&build(&cluster()));
    serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    check("cluster.json", &json);
}

#[test]
fn an_unreadable_kind_is_a_note_after_the_problems() {
    let inputs = Inputs {
        peers: Listed::Unreadable(
            "403 Forbidden: bgppeers.herald.dev is forbidden: User \"alice\" cannot list \
             resource \"bgppeers\" in API group \"herald.dev\" at the cluster scope"
                .into(),
        ),
        ..cluster()
    };
    check("forbidden-peers.txt", &render::text(&build(&inputs)));
}

#[test]
fn an_empty_cluster_says_so() {
    check("empty.txt", &render::text(&build(&Inputs::default())));
}
