//! A worst-case model of the cost the Kubernetes API server estimates for one CEL rule when it
//! stores a CRD, small enough to read in one sitting.
//!
//! # What the server does
//!
//! `apiextensions-apiserver` compiles each `x-kubernetes-validations` rule and asks cel-go's
//! `checker.Cost` for the rule's worst-case cost, with the apiserver's `library.CostEstimator`
//! supplying the cost of Kubernetes' functions and the size of anything reached from `self`.
//! The model below follows those two files (cel-go `checker/cost.go`, apiserver
//! `pkg/cel/library/cost.go`) rule for rule:
//!
//! - a literal costs 0, an identifier 1, a field selection 1 plus its operand, `has(a.f)` 1
//!   plus `a`; a list literal 10 plus its elements, a map literal 30 plus its entries;
//! - every function costs its target and arguments plus its own part, 1 unless listed here:
//!   - `a || b`, `a && b`: `a + b` (no own part); `c ? a : b`: `c + max(a, b)`;
//!   - `==`, `!=` and `<`-style comparisons: `ceil(0.1 * min(size(a), size(b)))` (1 for
//!     scalars);
//!   - `x in list`: `size(list)`; string `+`: `ceil(0.1 * (size(a) + size(b)))`;
//!   - `s.matches(re)`: `ceil(0.1 * (size(s) + 1)) * ceil(0.25 * size(re))`, the string
//!     traversal factor (0.1) times the regex length factor (0.25);
//!   - `s.contains(t)`: `ceil(0.1 * size(s)) * ceil(0.1 * size(t))`; `startsWith`,
//!     `endsWith`: `ceil(0.1 * size(arg))`;
//!   - `split`, `replace`: `ceil(0.2 * size(s))`; `lowerAscii`, `upperAscii`, `trim`,
//!     `substring`, string `indexOf`/`lastIndexOf`: `ceil(0.1 * size(s))`;
//! - a macro over a list or map of `n` entries (`all`, `exists`, `exists_one`, `map`,
//!   `filter`) costs the range, a fixed part, and `n` times (its body plus the per-step cost of
//!   the comprehension cel-go expands it into: 3 for `all`, 4 for `exists`, 2 for `exists_one`,
//!   12 for `map`, 13 for `filter`).
//!
//! Sizes come from the schema the way the server derives them (apiserver
//! `pkg/cel/common/schemas.go`): a string's size is `4 * maxLength` (maxLength counts code
//! points, the server counts bytes), a list's `maxItems`, a map's `maxProperties`. Without a
//! bound the server assumes the largest request it accepts, 3 MiB: a string of 3 MiB - 2, or
//! as many items as fit, `(3 MiB - 2) / (smallest item + 1)`.
//!
//! # Where it is deliberately pessimistic
//!
//! The model never comes out below the server's estimate on the rules it accepts, so a rule it
//! passes is one the server stores; it may come out above:
//!
//! - scalars have size 1 (the server often finds 0, making a comparison 1 cheaper);
//! - `has()` costs 1 more than the operand (newer servers charge nothing for it);
//! - an unbounded string is always 3 MiB - 2 (newer servers use the enum or the `format`);
//!   map keys are unbounded strings (the server does not look at them at all);
//! - the smallest serialised item is a lower bound (`""` for any string, `1` for any number);
//! - the parts of `s.split(x)` are each as long as `s`, and there are as many as `s` has
//!   characters (the server agrees on the count, and, through a quirk of its size lookup, on
//!   the part length too);
//! - string literals count their escape sequences as written (`'\\.'` is 3).
//!
//! A function it does not know is an error, not a guess: add it from the two files above.
//!
//! The rule is read by [`crate::syntax`].

use serde_json::Value;

use crate::syntax::{Expr, parse};

/// `apiserver/pkg/cel.DefaultMaxRequestSizeBytes`: the largest request the API server accepts,
/// from which it bounds what the schema does not.
pub const MAX_REQUEST_SIZE: u64 = 3 * 1024 * 1024;
/// The size the server assumes for an unbounded string (`""` subtracted).
const UNBOUNDED_STRING: u64 = MAX_REQUEST_SIZE - 2;
/// cel-go `common.StringTraversalCostFactor`.
const TRAVERSAL: f64 = 0.1;
/// cel-go `common.RegexStringLengthCostFactor`.
const REGEX_LENGTH: f64 = 0.25;
/// cel-go `common.ListCreateBaseCost`.
const LIST_CREATE: u64 = 10;
/// cel-go `common.MapCreateBaseCost`.
const MAP_CREATE: u64 = 30;

/// What a value looks like to the estimator: its kind and its largest `size()`.
#[derive(Clone, Debug)]
pub struct Shape {
    kind: Kind,
    /// Characters of a string, bytes, items of a list, entries of a map; 1 for a scalar.
    size: u64,
}

#[derive(Clone, Debug)]
enum Kind {
    Scalar,
    Str,
    Bytes,
    List(Box<Shape>),
    Map(Box<Shape>),
    /// An object with named properties; the schema resolves `self.field`.
    Object(Value),
    /// `x-kubernetes-int-or-string`, `dyn()`, or what the model cannot know.
    Dyn,
}

impl Shape {
    fn new(kind: Kind, size: u64) -> Self {
        Shape { kind, size }
    }

    fn scalar() -> Self {
        Shape::new(Kind::Scalar, 1)
    }

    fn unknown() -> Self {
        Shape::new(Kind::Dyn, u64::MAX)
    }

    /// The shape of data matching an OpenAPI schema node, as `SchemaDeclType` sizes it.
    pub fn of(schema: &Value) -> Self {
        if schema["x-kubernetes-int-or-string"] == true {
            // 1.27 ignores maxLength here; later servers use it.
            return Shape::new(Kind::Dyn, UNBOUNDED_STRING);
        }
        let max = |key: &str| schema[key].as_u64();
        match schema["type"].as_str() {
            Some("string") => match schema["format"].as_str() {
                Some("date" | "date-time" | "duration") => Shape::scalar(),
                Some("byte") => {
                    Shape::new(Kind::Bytes, max("maxLength").unwrap_or(UNBOUNDED_STRING))
                }
                _ => Shape::new(
                    Kind::Str,
                    max("maxLength").map_or(UNBOUNDED_STRING, |n| n.saturating_mul(4)),
                ),
            },
            Some("integer" | "number" | "boolean") => Shape::scalar(),
            Some("array") => {
                let items = &schema["items"];
                let n = max("maxItems")
                    .unwrap_or_else(|| UNBOUNDED_STRING / (min_serialized_size(items) + 1));
                Shape::new(Kind::List(Box::new(Shape::of(items))), n)
            }
            Some("object") if schema["additionalProperties"].is_object() => {
                let values = &schema["additionalProperties"];
                let n = max("maxProperties")
                    .unwrap_or_else(|| UNBOUNDED_STRING / (min_serialized_size(values) + 6));
                Shape::new(Kind::Map(Box::new(Shape::of(values))), n)
            }
            Some("object") => Shape::new(Kind::Object(schema.clone()), 1),
            _ => Shape::new(Kind::Dyn, UNBOUNDED_STRING),
        }
    }

    /// The shape of `self.field`.
    fn field(&self, field: &str) -> Result<Shape, String> {
        match &self.kind {
            Kind::Object(schema) => schema["properties"]
                .get(field)
                .map(Shape::of)
                .ok_or_else(|| format!("the schema has no field {field:?}")),
            Kind::Map(values) => Ok((**values).clone()),
            Kind::Dyn => Ok(Shape::unknown()),
            _ => Err(format!("cannot select {field:?} from a {:?}", self.kind)),
        }
    }

    /// The shape of one item of a list or one value of a map.
    fn element(&self) -> Shape {
        match &self.kind {
            Kind::List(e) | Kind::Map(e) => (**e).clone(),
            _ => Shape::unknown(),
        }
    }

    /// A shape covering both (the two branches of `?:`).
    fn union(&self, other: &Shape) -> Shape {
        let size = self.size.max(other.size);
        let kind = match (&self.kind, &other.kind) {
            (Kind::List(a), Kind::List(b)) => Kind::List(Box::new(a.union(b))),
            (Kind::Map(a), Kind::Map(b)) => Kind::Map(Box::new(a.union(b))),
            (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => a.clone(),
            _ => Kind::Dyn,
        };
        Shape::new(kind, size)
    }
}

/// The fewest bytes a value of the schema can take in JSON: `""`, `0`, `true`, `[]`, `{}` plus
/// the required properties without a default. The server divides the request size by this to
/// bound an unbounded list or map.
pub fn min_serialized_size(schema: &Value) -> u64 {
    match schema["type"].as_str() {
        Some("string") => 2,
        Some("boolean") => 4,
        Some("object") if !schema["additionalProperties"].is_object() => {
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            2 + required
                .iter()
                .filter_map(|name| {
                    let name = name.as_str()?;
                    let prop = &schema["properties"][name];
                    prop.get("default")
                        .is_none()
                        .then(|| name.chars().count() as u64 + min_serialized_size(prop) + 4)
                })
                .sum::<u64>()
        }
        Some("array" | "object") => 2,
        _ => 1,
    }
}

/// The worst-case cost of one evaluation of `rule` with `self` (and `oldSelf`) of the given
/// shape: the server's `MaxCost`, before it multiplies by how often the rule can run.
pub fn rule_cost(rule: &str, self_shape: &Shape) -> Result<u64, String> {
    let expr = parse(rule)?;
    let mut scope = vec![
        ("self".to_owned(), self_shape.clone()),
        ("oldSelf".to_owned(), self_shape.clone()),
    ];
    Ok(estimate(&expr, &mut scope)?.cost)
}

/// `ceil(x * factor)`, saturating, as cel-go's `multiplyByCostFactor`.
fn factor(x: u64, f: f64) -> u64 {
    let v = (x as f64 * f).ceil();
    if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v as u64
    }
}

struct Est {
    cost: u64,
    shape: Shape,
}

impl Est {
    fn new(cost: u64, shape: Shape) -> Self {
        Est { cost, shape }
    }
}

type Scope = Vec<(String, Shape)>;

fn estimate(e: &Expr, scope: &mut Scope) -> Result<Est, String> {
    match e {
        Expr::Str(n) => Ok(Est::new(0, Shape::new(Kind::Str, *n))),
        Expr::Bytes(n) => Ok(Est::new(0, Shape::new(Kind::Bytes, *n))),
        Expr::Scalar => Ok(Est::new(0, Shape::scalar())),
        Expr::Ident(name) => scope
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| Est::new(1, s.clone()))
            .ok_or_else(|| format!("unknown identifier {name:?}")),
        Expr::Select(operand, field) => {
            let o = estimate(operand, scope)?;
            Ok(Est::new(o.cost.saturating_add(1), o.shape.field(field)?))
        }
        Expr::List(items) => {
            let mut cost = LIST_CREATE;
            let mut elem: Option<Shape> = None;
            for item in items {
                let i = estimate(item, scope)?;
                cost = cost.saturating_add(i.cost);
                elem = Some(elem.map_or(i.shape.clone(), |e| e.union(&i.shape)));
            }
            let elem = elem.unwrap_or_else(Shape::unknown);
            Ok(Est::new(
                cost,
                Shape::new(Kind::List(Box::new(elem)), items.len() as u64),
            ))
        }
        Expr::Map(entries) => {
            let mut cost = MAP_CREATE;
            let mut value: Option<Shape> = None;
            for (k, v) in entries {
                let (k, v) = (estimate(k, scope)?, estimate(v, scope)?);
                cost = cost.saturating_add(k.cost).saturating_add(v.cost);
                value = Some(value.map_or(v.shape.clone(), |e| e.union(&v.shape)));
            }
            let value = value.unwrap_or_else(Shape::unknown);
            Ok(Est::new(
                cost,
                Shape::new(Kind::Map(Box::new(value)), entries.len() as u64),
            ))
        }
        Expr::Call(func, target, args) => call(func, target.as_deref(), args, scope),
    }
}

fn call(
    func: &str,
    target: Option<&Expr>,
    args: &[Expr],
    scope: &mut Scope,
) -> Result<Est, String> {
    // Macros first: their arguments are not plain values.
    match (func, target, args) {
        ("has", None, [Expr::Select(operand, field)]) => {
            let o = estimate(operand, scope)?;
            o.shape.field(field)?;
            return Ok(Est::new(o.cost.saturating_add(1), Shape::scalar()));
        }
        (
            "all" | "exists" | "exists_one" | "map" | "filter",
            Some(range),
            [Expr::Ident(var), body @ ..],
        ) if !body.is_empty() => {
            return comprehension(func, range, var, body, scope);
        }
        _ => {}
    }
    let t = target.map(|t| estimate(t, scope)).transpose()?;
    let a = args
        .iter()
        .map(|x| estimate(x, scope))
        .collect::<Result<Vec<_>, _>>()?;
    let base = a
        .iter()
        .chain(t.as_ref())
        .fold(0u64, |sum, x| sum.saturating_add(x.cost));
    let ts = t.as_ref().map(|t| t.shape.size).unwrap_or(0);
    let size = |i: usize| a[i].shape.size;
    let own = |c: u64, shape: Shape| Ok(Est::new(c.saturating_add(base), shape));
    let arity = (t.is_some(), a.len());
    match (func, arity) {
        ("_||_" | "_&&_", (false, 2)) => Ok(Est::new(base, Shape::scalar())),
        ("_?_:_", (false, 3)) => Ok(Est::new(
            a[0].cost.saturating_add(a[1].cost.max(a[2].cost)),
            a[1].shape.union(&a[2].shape),
        )),
        ("!_" | "-_", (false, 1)) => own(1, Shape::scalar()),
        ("_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_", (false, 2)) => {
            own(factor(size(0).min(size(1)), TRAVERSAL), Shape::scalar())
        }
        ("@in", (false, 2)) => match a[1].shape.kind {
            Kind::List(_) => own(size(1), Shape::scalar()),
            _ => own(1, Shape::scalar()),
        },
        ("_+_", (false, 2)) => {
            let sum = size(0).saturating_add(size(1));
            match (&a[0].shape.kind, &a[1].shape.kind) {
                (Kind::Str, _) | (Kind::Bytes, _) => own(
                    factor(sum, TRAVERSAL),
                    Shape::new(a[0].shape.kind.clone(), sum),
                ),
                (Kind::List(_), _) => own(1, Shape::new(a[0].shape.union(&a[1].shape).kind, sum)),
                _ => own(1, Shape::scalar()),
            }
        }
        ("_-_" | "_*_" | "_/_" | "_%_", (false, 2)) => own(1, Shape::scalar()),
        ("_[_]", (false, 2)) => own(1, a[0].shape.element()),
        ("size", (true, 0) | (false, 1)) => own(1, Shape::scalar()),
        ("matches", (true, 1)) => own(
            factor(ts.saturating_add(1), TRAVERSAL).saturating_mul(factor(size(0), REGEX_LENGTH)),
            Shape::scalar(),
        ),
        ("contains", (true, 1)) => own(
            factor(ts, TRAVERSAL).saturating_mul(factor(size(0), TRAVERSAL)),
            Shape::scalar(),
        ),
        ("startsWith" | "endsWith", (true, 1)) => own(factor(size(0), TRAVERSAL), Shape::scalar()),
        ("split", (true, 1 | 2)) => {
            let part = Shape::new(Kind::Str, ts);
            own(
                factor(ts, 2.0 * TRAVERSAL),
                Shape::new(Kind::List(Box::new(part)), ts),
            )
        }
        ("replace", (true, 2 | 3)) => {
            // Every character replaced by the longest replacement, the original kept too.
            let grown = ts.saturating_add(ts.saturating_add(1).saturating_mul(size(1)));
            own(factor(ts, 2.0 * TRAVERSAL), Shape::new(Kind::Str, grown))
        }
        ("lowerAscii" | "upperAscii" | "trim" | "substring", (true, _)) => {
            own(factor(ts, TRAVERSAL), Shape::new(Kind::Str, ts))
        }
        ("indexOf" | "lastIndexOf", (true, 1 | 2)) => match &t.as_ref().map(|t| &t.shape.kind) {
            Some(Kind::Str) => own(factor(ts, TRAVERSAL), Shape::scalar()),
            _ => Err(format!("{func} on a list is not modelled")),
        },
        ("int" | "uint" | "double" | "bool" | "duration" | "timestamp", (false, 1)) => {
            own(1, Shape::scalar())
        }
        ("string", (false, 1)) => match a[0].shape.kind {
            Kind::Str => own(1, a[0].shape.clone()),
            _ => own(1, Shape::new(Kind::Str, u64::MAX)),
        },
        ("dyn", (false, 1)) => own(1, a[0].shape.clone()),
        _ => Err(format!(
            "the estimator does not model {func}() with {} argument(s){}; add it from cel-go \
             checker/cost.go or apiserver pkg/cel/library/cost.go",
            args.len(),
            if target.is_some() { " on a target" } else { "" }
        )),
    }
}

/// `range.all(v, p)` and friends, costed as the comprehension cel-go expands them into: the
/// range, the accumulator's start and result, and `n` times the loop condition and step.
fn comprehension(
    func: &str,
    range: &Expr,
    var: &str,
    body: &[Expr],
    scope: &mut Scope,
) -> Result<Est, String> {
    let r = estimate(range, scope)?;
    let (item, n) = match &r.shape.kind {
        Kind::List(e) => ((**e).clone(), r.shape.size),
        Kind::Map(_) => (Shape::new(Kind::Str, UNBOUNDED_STRING), r.shape.size),
        Kind::Dyn => (Shape::unknown(), u64::MAX),
        other => return Err(format!("{func}() over a {other:?}")),
    };
    scope.push((var.to_owned(), item.clone()));
    let bodies = body
        .iter()
        .map(|b| estimate(b, scope))
        .collect::<Result<Vec<_>, _>>();
    scope.pop();
    let bodies = bodies?;
    let list_of = |s: &Shape| Shape::new(Kind::List(Box::new(s.clone())), n);
    // (accumulator start + result, per-item overhead, body costs, result shape)
    let (fixed, step, result) = match (func, bodies.as_slice()) {
        // __result__ && p, while @not_strictly_false(__result__)
        ("all", [p]) => (1, 3 + p.cost, Shape::scalar()),
        // __result__ || p, while @not_strictly_false(!__result__)
        ("exists", [p]) => (1, 4 + p.cost, Shape::scalar()),
        // p ? __result__ + 1 : __result__, then __result__ == 1
        ("exists_one", [p]) => (2, 2 + p.cost, Shape::scalar()),
        // __result__ + [f] from []
        ("map", [f]) => (LIST_CREATE + 1, 12 + f.cost, list_of(&f.shape)),
        ("map", [p, f]) => (LIST_CREATE + 1, 12 + p.cost + f.cost, list_of(&f.shape)),
        // p ? __result__ + [v] : __result__ from []
        ("filter", [p]) => (LIST_CREATE + 1, 13 + p.cost, list_of(&item)),
        _ => return Err(format!("{func}() with {} arguments", body.len() + 1)),
    };
    let cost = r
        .cost
        .saturating_add(fixed)
        .saturating_add(n.saturating_mul(step));
    Ok(Est::new(cost, result))
}
