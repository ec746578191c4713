//! Schema pieces the derive macros cannot express: address syntax as regular expressions and
//! the CEL rules built from them.
//!
//! Only base CEL, `matches()` and the strings extension (`split`) are used, because CRDs
//! must install on API servers from 1.27 on, before the IP/CIDR CEL library existed. What CEL
//! cannot check there (the order of an IPv6 range, host bits of a CIDR, overlaps between
//! pools) Herald checks itself in [`crate::validate`] and reports on the object.
//!
//! The API server refuses a CRD whose rules it estimates too expensive: per rule, the cost of
//! one evaluation times the number of list items it runs on must stay under 10,000,000
//! (`tests/cel_cost.rs` models the estimate). `matches()` is charged by the product of the
//! string's and the regex's lengths, so the full address grammar is an OpenAPI `pattern`,
//! which is not costed, and the CEL rules use only short regexes.

use schemars::{Schema, SchemaGenerator, json_schema};

/// One IPv4 octet without leading zeros (RE2 syntax).
const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";

/// A dotted-quad IPv4 address.
pub fn ipv4_regex() -> String {
    format!("{OCTET}([.]{OCTET}){{3}}")
}

/// An IPv6 address in any of the RFC 4291 §2.2 text forms, including an embedded IPv4 tail.
pub fn ipv6_regex() -> String {
    let h = "[0-9a-fA-F]{1,4}";
    let v4 = ipv4_regex();
    let forms = [
        format!("({h}:){{7}}{h}"),
        format!("({h}:){{1,7}}:"),
        format!("({h}:){{1,6}}:{h}"),
        format!("({h}:){{1,5}}(:{h}){{1,2}}"),
        format!("({h}:){{1,4}}(:{h}){{1,3}}"),
        format!("({h}:){{1,3}}(:{h}){{1,4}}"),
        format!("({h}:){{1,2}}(:{h}){{1,5}}"),
        format!("{h}:(:{h}){{1,6}}"),
        format!(":((:{h}){{1,7}}|:)"),
        format!("({h}:){{6}}{v4}"),
        format!("({h}:){{1,5}}:{v4}"),
        format!("::(({h}:){{0,5}}){v4}"),
    ];
    format!("({})", forms.join("|"))
}

/// An anchored pattern for an IPv4 or IPv6 address.
pub fn ip_pattern() -> String {
    format!("^({}|{})$", ipv4_regex(), ipv6_regex())
}

/// An anchored pattern for one `IPPool.spec.addresses` entry: CIDR, same-family range, address.
pub fn address_entry_pattern() -> String {
    let (v4, v6) = (ipv4_regex(), ipv6_regex());
    format!(
        "^({v4}(/(3[0-2]|[12]?[0-9]))?|{v6}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?|{v4}-{v4}|{v6}-{v6})$"
    )
}

/// The coarse shape of an address entry: an IPv4-looking part (digits and dots) with an
/// optional `/len` or `-end` of the same look, or the same with IPv6-looking parts (hex digits,
/// dots and at least one colon). Short enough to be cheap as a CEL `matches()` over 1024
/// entries; the exact grammar is [`address_entry_pattern`].
pub fn address_entry_shape() -> String {
    let v6 = "[0-9a-fA-F.:]*:[0-9a-fA-F.:]*";
    format!("^([0-9.]+(/[0-9]+|-[0-9.]+)?|{v6}(/[0-9]+|-{v6})?)$")
}

/// CEL rule: an IPv4 range `a-b` must not start above its end.
///
/// The guard admits only `d.d.d.d-d.d.d.d` with 1 to 3 digits per octet, so `int()` cannot
/// fail on an entry that the `pattern` refuses anyway. `self.split('.')` of
/// `a0.a1.a2.a3-b0.b1.b2.b3` is `[a0, a1, a2, "a3-b0", b1, b2, b3]`, so most octets take one
/// `split()` instead of two; the API server charges every `split()` by the entry's full length.
pub fn cel_ipv4_range_ordered() -> String {
    let d = "[0-9]{1,3}";
    let octets = |parts: [&str; 4]| {
        parts
            .iter()
            .zip([16777216, 65536, 256, 1])
            .map(|(p, w)| format!("int({p}) * {w}"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let part = |i: usize| format!("self.split('.')[{i}]");
    let (a3, b0) = (
        format!("{}.split('-')[0]", part(3)),
        format!("{}.split('-')[1]", part(3)),
    );
    format!(
        "!self.matches('^{d}([.]{d}){{3}}-{d}([.]{d}){{3}}$') || {} <= {}",
        octets([&part(0), &part(1), &part(2), &a3]),
        octets([&b0, &part(4), &part(5), &part(6)])
    )
}

/// Schema of `IPPool.spec.addresses`: 1 to 1024 entries of at most 100 characters.
///
/// The exact syntax is the `pattern`: as a CEL `matches()` the same 2,600-character regex
/// was estimated at 2.7 times the API server's per-rule budget (issue 12). The CEL rules left
/// are cheap: the coarse shape, for a readable message on the common mistakes, and the order
/// of an IPv4 range.
pub fn addresses(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 1024,
        "items": {
            "type": "string",
            "maxLength": 100,
            "pattern": address_entry_pattern(),
            "x-kubernetes-validations": [
                {
                    "rule": format!("self.matches('{}')", address_entry_shape()),
                    "message": "must be a CIDR (192.0.2.0/24), a range of one family (192.0.2.10-192.0.2.20) or an address"
                },
                {
                    "rule": cel_ipv4_range_ordered(),
                    "message": "an IPv4 range must not start above its end"
                }
            ]
        }
    })
}

/// Schema of a required IP address field (IPv4 or IPv6).
pub fn ip_address(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "maxLength": 45, "pattern": ip_pattern() })
}

/// Schema of an optional IP address field.
pub fn optional_ip_address(generator: &mut SchemaGenerator) -> Schema {
    ip_address(generator)
}

/// Schema of an optional IPv4 address field (BGP router ID).
pub fn optional_ipv4_address(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "maxLength": 15, "pattern": format!("^{}$", ipv4_regex()) })
}

/// Schema of a list of BGP communities: `a:b` with 16-bit halves, or a well-known name.
pub fn communities(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": {
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": "self in ['no-export', 'no-advertise', 'no-export-subconfed', 'no-peer'] || (self.matches('^[0-9]{1,5}:[0-9]{1,5}$') && int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535)",
                "message": "must be a:b with both parts 0-65535, or one of no-export, no-advertise, no-export-subconfed, no-peer"
            }]
        }
    })
}

/// Schema of a list of BGP large communities: `a:b:c` with 32-bit parts.
pub fn large_communities(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": {
            "type": "string",
            "maxLength": 40,
            "x-kubernetes-validations": [{
                "rule": "self.matches('^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && self.split(':').all(p, int(p) <= 4294967295)",
                "message": "must be a:b:c with each part 0-4294967295"
            }]
        }
    })
}
