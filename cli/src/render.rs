//! The report as text (aligned sections, problems first) and as JSON.

use crate::report::{FamilyCounts, Report};
use crate::table::Table;

/// The report as `--json` prints it: pretty, with a final newline.
pub fn json(report: &Report) -> String {
    let mut out = serde_json::to_string_pretty(report).expect("the report serializes");
    out.push('\n');
    out
}

/// The report as text: Problems, Notes (if any), Services, Nodes, Pools.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    if report.problems.is_empty() {
        out.push_str("PROBLEMS: none\n");
    } else {
        out.push_str(&format!("PROBLEMS ({})\n", report.problems.len()));
        let mut t = Table::new(&["OBJECT", "PROBLEM"]);
        for p in &report.problems {
            t.row(vec![p.object.clone(), p.detail.clone()]);
        }
        out.push_str(&t.render());
    }
    if !report.notes.is_empty() {
        out.push_str("\nNOTES\n");
        for n in &report.notes {
            out.push_str(&format!("- {n}\n"));
        }
    }

    section(&mut out, "SERVICES", report.services.len());
    if !report.services.is_empty() {
        let mut t = Table::new(&["NAMESPACE/NAME", "ADDRESSES", "POOL", "ANNOUNCED BY"]);
        for s in &report.services {
            let addresses: Vec<&str> = s.addresses.iter().map(|a| a.address.as_str()).collect();
            t.row(vec![
                format!("{}/{}", s.namespace, s.name),
                or_dash(addresses.join(",")),
                or_dash(s.pool.clone().unwrap_or_default()),
                s.announced_by(),
            ]);
        }
        out.push_str(&t.render());
    }

    section(&mut out, "NODES", report.nodes.len());
    if !report.nodes.is_empty() {
        let mut t = Table::new(&["NAME", "SESSIONS", "ANNOUNCED", "EXCLUDED"]);
        for n in &report.nodes {
            t.row(vec![
                n.name.clone(),
                or_dash(n.sessions.clone()),
                n.announced_count.to_string(),
                or_dash(n.excluded.clone().unwrap_or_default()),
            ]);
        }
        out.push_str(&t.render());
    }

    section(&mut out, "POOLS", report.pools.len());
    if !report.pools.is_empty() {
        let mut t = Table::new(&[
            "NAME",
            "IPV4 ASSIGNED/AVAILABLE",
            "IPV6 ASSIGNED/AVAILABLE",
            "READY",
        ]);
        for p in &report.pools {
            let mut ready = p.ready.clone().unwrap_or_else(|| "-".to_owned());
            if p.disabled {
                ready.push_str(" (disabled)");
            }
            t.row(vec![
                p.name.clone(),
                counts(p.ipv4.as_ref()),
                counts(p.ipv6.as_ref()),
                ready,
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

fn section(out: &mut String, title: &str, count: usize) {
    out.push_str(&format!("\n{title} ({count})\n"));
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

fn counts(c: Option<&FamilyCounts>) -> String {
    c.map_or_else(
        || "-".to_owned(),
        |c| format!("{}/{}", c.assigned, c.available),
    )
}
