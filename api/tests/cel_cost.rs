//! Every CEL rule of every generated CRD fits the API server's cost budget with room to spare.
//!
//! When a CRD is created or updated, `apiextensions-apiserver` estimates each
//! `x-kubernetes-validations` rule's worst-case cost and refuses the whole CRD if one rule, or
//! all rules together, could cost too much (`pkg/apis/apiextensions/validation`):
//!
//! - a rule's cost is its worst-case cost for one evaluation (see [`estimator`]) times its
//!   *cardinality*, the most times it can run in one object: the product of `maxItems`
//!   (lists) and `maxProperties` (maps) of every list and map around the node the rule sits on.
//!   Under a list or map without such a bound the server takes as many nodes as fit into a
//!   3 MiB request, `3 MiB / (smallest serialised node + 1)`, which puts any non-trivial rule
//!   there over budget;
//! - one rule may cost at most [`PER_RULE_LIMIT`], all rules of a CRD together at most
//!   [`PER_CRD_LIMIT`]; the refusal reads "estimated rule cost exceeds budget by factor of
//!   2.7x".
//!
//! The budgets and the cost model have been the same from 1.27 to 1.31. This test holds every
//! rule to half of each budget, so that a server that estimates somewhat higher than the model
//! (or a future tweak of the model) still stores the CRDs, and prints each rule's figures.
//! `the_estimate_reproduces_the_refusal_of_issue_12` checks the model against a CRD that
//! kube-apiserver 1.28 refused.

#[path = "cel_cost/estimator.rs"]
mod estimator;
#[path = "cel_cost/syntax.rs"]
mod syntax;

use estimator::{MAX_REQUEST_SIZE, Shape, min_serialized_size, rule_cost};
use herald_api::crds;
use serde_json::{Value, json};

/// `StaticEstimatedCostLimit`: the most one rule may cost, cardinality included.
const PER_RULE_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: the most all rules of one CRD may cost together.
const PER_CRD_LIMIT: u64 = 100_000_000;

/// One rule with its estimate, named by its path as the server names it in a refusal.
struct RuleCost {
    path: String,
    rule: String,
    /// Worst case of one evaluation.
    per_call: u64,
    /// Most evaluations in one object.
    cardinality: u64,
    /// `per_call * cardinality`, what the server compares with [`PER_RULE_LIMIT`].
    total: u64,
}

/// Every rule under `schema` (an `openAPIV3Schema`), depth first.
fn rule_costs(schema: &Value) -> Vec<RuleCost> {
    let mut out = Vec::new();
    walk(schema, "openAPIV3Schema".to_owned(), Some(1), &mut out);
    out
}

/// `cardinality` is the bound on how often `node` occurs, `None` once some list or map above
/// it is unbounded (as `CELSchemaContext.MaxCardinality` in the server).
fn walk(node: &Value, path: String, cardinality: Option<u64>, out: &mut Vec<RuleCost>) {
    for (i, rule) in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        // Under an unbounded list or map the server falls back to how many such nodes fit in a
        // request, from the smallest this node can be (`MaxCardinality(MinSerializedSize)`).
        let cardinality =
            cardinality.unwrap_or_else(|| MAX_REQUEST_SIZE / (min_serialized_size(node) + 1));
        let text = rule["rule"].as_str().unwrap_or_default();
        let path = format!("{path}.x-kubernetes-validations[{i}].rule");
        let per_call = rule_cost(text, &Shape::of(node))
            .unwrap_or_else(|e| panic!("{path}: cannot estimate {text:?}: {e}"));
        out.push(RuleCost {
            total: per_call.saturating_mul(cardinality),
            path,
            rule: text.to_owned(),
            per_call,
            cardinality,
        });
        assert!(
            rule.get("messageExpression").is_none(),
            "{}: messageExpression is costed too; teach this test",
            out.last().unwrap().path
        );
    }
    // An object's fields occur as often as the object; each item of a list `maxItems` times as
    // often, each value of a map `maxProperties` times (`extractMaxElements`).
    let times = |key: &str| node[key].as_u64().and_then(|n| cardinality?.checked_mul(n));
    if let Some(props) = node["properties"].as_object() {
        for (name, prop) in props {
            walk(prop, format!("{path}.properties[{name}]"), cardinality, out);
        }
    }
    if node["additionalProperties"].is_object() {
        let path = format!("{path}.additionalProperties");
        walk(
            &node["additionalProperties"],
            path,
            times("maxProperties"),
            out,
        );
    }
    if node["items"].is_object() {
        walk(
            &node["items"],
            format!("{path}.items"),
            times("maxItems"),
            out,
        );
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in node[key].as_array().into_iter().flatten().enumerate() {
            walk(sub, format!("{path}.{key}[{i}]"), cardinality, out);
        }
    }
}

fn open_api_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("every Herald CRD has a schema")).unwrap()
}

/// The server's way of saying how far over budget: `2.7x`.
fn factor(cost: u64, limit: u64) -> String {
    format!("{:.1}x", cost as f64 / limit as f64)
}

fn print_table(crd: &str, rules: &[RuleCost]) {
    println!("{crd}:");
    for r in rules {
        let excerpt: String = r.rule.chars().take(70).collect();
        println!(
            "  {:>10} = {:>6} x {:>5}  ({:>5.2}% of the rule budget)  {}\n      {excerpt}{}",
            r.total,
            r.per_call,
            r.cardinality,
            100.0 * r.total as f64 / PER_RULE_LIMIT as f64,
            r.path,
            if r.rule.chars().count() > 70 {
                "…"
            } else {
                ""
            },
        );
    }
    let sum: u64 = rules.iter().map(|r| r.total).sum();
    println!(
        "  {sum:>10} in all ({:.2}% of the CRD budget)",
        100.0 * sum as f64 / PER_CRD_LIMIT as f64
    );
}

#[test]
fn every_rule_costs_less_than_half_the_servers_budget() {
    let mut over = Vec::new();
    for (file, crd) in crds::all() {
        let rules = rule_costs(&open_api_schema(&crd));
        print_table(file, &rules);
        for r in &rules {
            if r.total > PER_RULE_LIMIT / 2 {
                over.push(format!(
                    "{file}: {} costs {} = {} per call x {} ({} of the budget {PER_RULE_LIMIT})",
                    r.path,
                    r.total,
                    r.per_call,
                    r.cardinality,
                    factor(r.total, PER_RULE_LIMIT)
                ));
            }
        }
        let sum = rules.iter().fold(0u64, |s, r| s.saturating_add(r.total));
        if sum > PER_CRD_LIMIT / 2 {
            over.push(format!(
                "{file}: all rules cost {sum} ({} of the CRD budget {PER_CRD_LIMIT})",
                factor(sum, PER_CRD_LIMIT)
            ));
        }
    }
    assert!(
        over.is_empty(),
        "rules over half the API server's budget (add maxItems/maxLength, move syntax to \
         `pattern`, or simplify):\n{}",
        over.join("\n")
    );
}

/// The IPPool CRD as it was when kube-apiserver 1.28 refused it with
/// `...properties[spec].properties[addresses].items.x-kubernetes-validations[0].rule:
/// Forbidden: estimated rule cost exceeds budget by factor of 2.7x` (issue 12).
#[test]
fn the_estimate_reproduces_the_refusal_of_issue_12() {
    let text = include_str!("fixtures/ippool-refused-by-1.28.yaml");
    let crd: Value = serde_saphyr::from_str(text).expect("the fixture is YAML");
    let rules = rule_costs(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]);
    print_table("ippool (issue 12)", &rules);
    let refused: Vec<_> = rules.iter().filter(|r| r.total > PER_RULE_LIMIT).collect();
    assert_eq!(refused.len(), 1, "the server refused exactly one rule");
    let r = refused[0];
    assert_eq!(
        r.path,
        "openAPIV3Schema.properties[spec].properties[addresses].items\
         .x-kubernetes-validations[0].rule"
    );
    // 41 (a 400-byte entry) * 652 (a 2606-character regex) + 1 for `self`, 1024 entries.
    assert_eq!((r.per_call, r.cardinality), (26_733, 1024));
    assert_eq!(factor(r.total, PER_RULE_LIMIT), "2.7x");
}

/// Figures from Kubernetes' own `TestCostEstimation` (apiextensions-apiserver
/// `pkg/apiserver/schema/cel/compilation_test.go`), one evaluation each, where the model is
/// exact rather than pessimistic.
#[test]
fn the_estimate_matches_the_servers_own_test_figures() {
    let string = |max: Option<u64>| match max {
        Some(n) => json!({"type": "string", "maxLength": n}),
        None => json!({"type": "string"}),
    };
    let list = |items: Value, max: Option<u64>| match max {
        Some(n) => json!({"type": "array", "items": items, "maxItems": n}),
        None => json!({"type": "array", "items": items}),
    };
    let cases = [
        (string(Some(50)), r#"self.matches("x")"#, 22),
        (string(None), r#"self.matches("x")"#, 314_574),
        (string(Some(10)), "self.contains('test')", 5),
        (string(None), "self.contains('test')", 314_574),
        (
            string(Some(4)),
            r#"size(self + "hello") > size("hello")"#,
            7,
        ),
        (
            string(None),
            r#"size(self + "hello") > size("hello")"#,
            314_578,
        ),
        (string(Some(15)), "self.startsWith('test')", 2),
        (
            list(json!({"type": "number"}), Some(10)),
            "self.all(x, true)",
            32,
        ),
        (
            list(json!({"type": "number"}), None),
            "self.all(x, true)",
            4_718_591,
        ),
        (list(string(None), None), "self.all(x, true)", 3_145_727),
        (
            list(json!({"type": "boolean"}), None),
            "self.all(x, true)",
            1_887_437,
        ),
        (list(string(None), Some(8)), "self[1] == self[1]", 314_577),
        (
            list(json!({"type": "number"}), Some(10)),
            "self.all(x, self.all(y, true))",
            352,
        ),
    ];
    for (schema, rule, expected) in cases {
        let got = rule_cost(rule, &Shape::of(&schema)).unwrap();
        assert_eq!(got, expected, "{rule} on {schema}");
    }
}
