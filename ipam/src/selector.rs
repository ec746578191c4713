//! Kubernetes label selectors, as a pure type.
//!
//! Semantics follow `metav1.LabelSelector`: every `match_labels` pair and every
//! requirement must hold (AND); an empty selector matches everything.
//! - `In`: the label is present and its value is one of `values`;
//! - `NotIn`: the label is absent, or its value is none of `values`;
//! - `Exists` / `DoesNotExist`: the label is present / absent (`values` ignored).

use std::collections::BTreeMap;

/// A label selector: `matchLabels` plus `matchExpressions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Labels that must be present with exactly these values.
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label is tested.
    pub operator: Operator,
    /// The values for `In` and `NotIn`.
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Present with one of the values.
    In,
    /// Absent, or present with none of the values.
    NotIn,
    /// Present.
    Exists,
    /// Absent.
    DoesNotExist,
}

impl Selector {
    /// A selector requiring exactly these labels.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Selector {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether `labels` satisfy this selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Selector {
        Selector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![Requirement {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn selector_semantics_follow_kubernetes() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let empty = labels(&[]);
        let cases: Vec<(&str, Selector, &BTreeMap<String, String>, bool)> = vec![
            (
                "empty selector matches anything",
                Selector::default(),
                &l,
                true,
            ),
            (
                "empty selector matches no labels",
                Selector::default(),
                &empty,
                true,
            ),
            (
                "match labels all present",
                Selector::labels([("app", "web")]),
                &l,
                true,
            ),
            (
                "match labels wrong value",
                Selector::labels([("app", "db")]),
                &l,
                false,
            ),
            (
                "match labels absent",
                Selector::labels([("app", "web")]),
                &empty,
                false,
            ),
            (
                "in with value",
                req("app", Operator::In, &["db", "web"]),
                &l,
                true,
            ),
            (
                "in without value",
                req("app", Operator::In, &["db"]),
                &l,
                false,
            ),
            (
                "in absent label",
                req("app", Operator::In, &["web"]),
                &empty,
                false,
            ),
            (
                "notin other value",
                req("app", Operator::NotIn, &["db"]),
                &l,
                true,
            ),
            (
                "notin same value",
                req("app", Operator::NotIn, &["web"]),
                &l,
                false,
            ),
            (
                "notin absent label",
                req("app", Operator::NotIn, &["web"]),
                &empty,
                true,
            ),
            (
                "exists present",
                req("tier", Operator::Exists, &[]),
                &l,
                true,
            ),
            (
                "exists absent",
                req("tier", Operator::Exists, &[]),
                &empty,
                false,
            ),
            (
                "doesnotexist absent",
                req("x", Operator::DoesNotExist, &[]),
                &l,
                true,
            ),
            (
                "doesnotexist present",
                req("app", Operator::DoesNotExist, &[]),
                &l,
                false,
            ),
        ];
        for (name, selector, labels, want) in cases {
            assert_eq!(selector.matches(labels), want, "{name}");
        }
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let mut s = req("tier", Operator::Exists, &[]);
        s.match_labels.insert("app".into(), "web".into());
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "x")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "db"), ("tier", "x")])));
    }
}
