//! RFC 7606 on an UPDATE's path attributes, judged on the framing before netgauze reads the
//! message.
//!
//! netgauze parses an attribute whose Attribute Length is wrong for its type (ORIGIN of 2
//! octets, NEXT_HOP of 5, COMMUNITIES of 3, ...) as a failed message, which would reset the
//! session; RFC 7606 asks for treat-as-withdraw or attribute discard instead. So the
//! attribute list is walked here first, with the rules of RFC 7606 §3, §4 and §7 for the
//! attributes Herald knows; what must not reach netgauze (a malformed attribute, a repeated
//! one) is cut out of the frame, and netgauze reads the rest, including the NLRI whose count
//! the verdict changes. Value checks (an ORIGIN of 9, an AS_PATH segment overrunning its
//! attribute) stay with netgauze, which reports them as treat-as-withdraw.
//!
//! ```text
//!   frame ─ walk attributes ─┬─ all well-formed ──────────────> netgauze (frame as is)
//!                            ├─ malformed/duplicate cut out ──> netgauze (rewritten frame)
//!                            │     + treat-as-withdraw reason
//!                            └─ MP_REACH/MP_UNREACH twice ────> NOTIFICATION 3/1
//! ```

use std::borrow::Cow;

use netgauze_bgp_pkt::notification::{BgpNotificationMessage, UpdateMessageError};

use super::codec::HEADER_LEN;

const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const EXTENDED_LENGTH: u8 = 0x10;

const ORIGIN: u8 = 1;
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;
const MULTI_EXIT_DISC: u8 = 4;
const LOCAL_PREF: u8 = 5;
const ATOMIC_AGGREGATE: u8 = 6;
const AGGREGATOR: u8 = 7;
const COMMUNITIES: u8 = 8;
const ORIGINATOR_ID: u8 = 9;
const CLUSTER_LIST: u8 = 10;
const MP_REACH_NLRI: u8 = 14;
const MP_UNREACH_NLRI: u8 = 15;
const EXTENDED_COMMUNITIES: u8 = 16;
const AS4_PATH: u8 = 17;
const AS4_AGGREGATOR: u8 = 18;
const LARGE_COMMUNITY: u8 = 32;

/// What the walk decided.
#[derive(Debug, PartialEq)]
pub enum Checked<'a> {
    /// Hand this frame (the input, or it with attributes cut out) to netgauze; with a reason,
    /// the message's NLRI are treated as withdrawn (RFC 7606 §2).
    Parse {
        /// The frame netgauze should read.
        frame: Cow<'a, [u8]>,
        /// Why the message is treat-as-withdraw, if it is.
        withdraw: Option<String>,
        /// Attributes discarded (RFC 7606 §2 attribute discard), by type code.
        discarded: Vec<u8>,
    },
    /// End the session with this NOTIFICATION (RFC 7606 §3(g): MP_REACH_NLRI or
    /// MP_UNREACH_NLRI more than once).
    Reset(BgpNotificationMessage),
}

/// The approach RFC 7606 gives an attribute.
enum Rule {
    Keep,
    Discard,
    Withdraw(String),
}

/// The flags a known attribute must carry (Optional and Transitive bits), RFC 4271 §5 and
/// the attribute's RFC; `None` for attributes left to netgauze.
fn expected_flags(code: u8) -> Option<u8> {
    match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some(TRANSITIVE),
        MULTI_EXIT_DISC | ORIGINATOR_ID | CLUSTER_LIST => Some(OPTIONAL),
        AGGREGATOR | COMMUNITIES | EXTENDED_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR
        | LARGE_COMMUNITY => Some(OPTIONAL | TRANSITIVE),
        _ => None,
    }
}

fn name(code: u8) -> &'static str {
    match code {
        ORIGIN => "ORIGIN",
        AS_PATH => "AS_PATH",
        NEXT_HOP => "NEXT_HOP",
        MULTI_EXIT_DISC => "MULTI_EXIT_DISC",
        LOCAL_PREF => "LOCAL_PREF",
        ATOMIC_AGGREGATE => "ATOMIC_AGGREGATE",
        AGGREGATOR => "AGGREGATOR",
        COMMUNITIES => "COMMUNITIES",
        ORIGINATOR_ID => "ORIGINATOR_ID",
        CLUSTER_LIST => "CLUSTER_LIST",
        MP_REACH_NLRI => "MP_REACH_NLRI",
        MP_UNREACH_NLRI => "MP_UNREACH_NLRI",
        EXTENDED_COMMUNITIES => "EXTENDED_COMMUNITIES",
        AS4_PATH => "AS4_PATH",
        AS4_AGGREGATOR => "AS4_AGGREGATOR",
        LARGE_COMMUNITY => "LARGE_COMMUNITY",
        _ => "attribute",
    }
}

/// Whether `value` is a well-framed AS_PATH / AS4_PATH of `width`-octet AS numbers: segments
/// of type, count, then count numbers, filling the value exactly.
fn path_framing_ok(value: &[u8], width: usize) -> bool {
    let mut rest = value;
    // Bounded: each step consumes at least two octets.
    while !rest.is_empty() {
        let [kind, count, tail @ ..] = rest else {
            return false;
        };
        if !(1..=4).contains(kind) || *count == 0 {
            return false;
        }
        let n = usize::from(*count) * width;
        if tail.len() < n {
            return false;
        }
        rest = &tail[n..];
    }
    true
}

/// RFC 7606 §7 for one attribute (§3(c): a flags error takes the attribute's approach).
fn rule(code: u8, flags: u8, value: &[u8], asn4: bool) -> Rule {
    let len = value.len();
    let Some(want) = expected_flags(code) else {
        return Rule::Keep;
    };
    // §7.x: the approach when this attribute is malformed.
    let withdraw_on_error = !matches!(
        code,
        ATOMIC_AGGREGATE | AGGREGATOR | AS4_PATH | AS4_AGGREGATOR
    );
    let bad = |why: String| {
        if withdraw_on_error {
            Rule::Withdraw(why)
        } else {
            Rule::Discard
        }
    };
    if flags & (OPTIONAL | TRANSITIVE) != want {
        return bad(format!("{} with flags {flags:#04x}", name(code)));
    }
    let length_ok = match code {
        ORIGIN => len == 1,
        NEXT_HOP | MULTI_EXIT_DISC | LOCAL_PREF | ORIGINATOR_ID => len == 4,
        ATOMIC_AGGREGATE => len == 0,
        AGGREGATOR => len == if asn4 { 8 } else { 6 },
        AS4_AGGREGATOR => len == 8,
        COMMUNITIES | CLUSTER_LIST => len > 0 && len.is_multiple_of(4),
        EXTENDED_COMMUNITIES => len > 0 && len.is_multiple_of(8),
        LARGE_COMMUNITY => len > 0 && len.is_multiple_of(12),
        AS4_PATH => path_framing_ok(value, 4),
        // AS_PATH values are judged by netgauze (segment overruns are treat-as-withdraw).
        _ => true,
    };
    if length_ok {
        Rule::Keep
    } else {
        bad(format!("{} of length {len}", name(code)))
    }
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// Walks the path attributes of `frame` (a whole message as [`super::codec::frame_len`]
/// delimited it) if it is an UPDATE, and decides what netgauze reads. `asn4`: 4-octet AS
/// numbers were negotiated (AGGREGATOR is then 8 octets).
pub fn check(frame: &[u8], asn4: bool) -> Checked<'_> {
    let untouched = |withdraw| Checked::Parse {
        frame: Cow::Borrowed(frame),
        withdraw,
        discarded: Vec::new(),
    };
    if frame.len() < HEADER_LEN || frame[18] != 2 {
        return untouched(None);
    }
    let body = &frame[HEADER_LEN..];
    // Withdrawn routes and the attribute field must be locatable, else netgauze's verdict
    // (a session reset: the NLRI cannot be found, §5.4) stands.
    let Some(withdrawn_len) = be16(body, 0) else {
        return untouched(None);
    };
    let attrs_at = 2 + withdrawn_len + 2;
    let Some(attrs_len) = be16(body, 2 + withdrawn_len) else {
        return untouched(None);
    };
    let Some(attrs) = body.get(attrs_at..attrs_at + attrs_len) else {
        return untouched(None);
    };
    let nlri = &body[attrs_at + attrs_len..];

    let mut keep: Vec<std::ops::Range<usize>> = Vec::new();
    let mut seen = [false; 256];
    let mut kept = [false; 256];
    let mut withdraw: Option<String> = None;
    let mut discarded = Vec::new();
    let mut cut = false;
    let mut pos = 0;
    // Bounded: each step consumes at least three octets or ends the walk.
    while pos < attrs.len() {
        let rest = &attrs[pos..];
        let header = if rest[0] & EXTENDED_LENGTH != 0 { 4 } else { 3 };
        // §4: too few octets left for an attribute header, or a length past the field's end:
        // treat-as-withdraw, the Total Path Attribute Length locating the NLRI.
        if rest.len() < header {
            withdraw.get_or_insert_with(|| "a truncated path attribute".into());
            cut = true;
            break;
        }
        let (flags, code) = (rest[0], rest[1]);
        let len = if header == 4 {
            usize::from(u16::from_be_bytes([rest[2], rest[3]]))
        } else {
            usize::from(rest[2])
        };
        if rest.len() < header + len {
            withdraw.get_or_insert_with(|| {
                format!(
                    "{} of length {len} overruns the path attributes",
                    name(code)
                )
            });
            cut = true;
            break;
        }
        let range = pos..pos + header + len;
        let value = &rest[header..header + len];
        pos += header + len;
        let code_index = usize::from(code);
        if seen[code_index] {
            if matches!(code, MP_REACH_NLRI | MP_UNREACH_NLRI) {
                return Checked::Reset(BgpNotificationMessage::UpdateMessageError(
                    UpdateMessageError::MalformedAttributeList {
                        value: Box::new([]),
                    },
                ));
            }
            // §3(g): every occurrence after the first is discarded.
            discarded.push(code);
            cut = true;
            continue;
        }
        seen[code_index] = true;
        match rule(code, flags, value, asn4) {
            Rule::Keep => {
                kept[code_index] = true;
                keep.push(range);
            }
            Rule::Discard => {
                discarded.push(code);
                cut = true;
            }
            Rule::Withdraw(why) => {
                withdraw.get_or_insert(why);
                cut = true;
            }
        }
    }
    // §3(d): with NLRI, the well-known mandatory attributes must be there (NEXT_HOP only for
    // the NLRI field: MP_REACH_NLRI carries its own next hop, RFC 4760 §3).
    let reach = !nlri.is_empty() || seen[usize::from(MP_REACH_NLRI)];
    if reach && withdraw.is_none() {
        let missing = [ORIGIN, AS_PATH]
            .into_iter()
            .chain((!nlri.is_empty()).then_some(NEXT_HOP))
            .find(|c| !kept[usize::from(*c)]);
        if let Some(code) = missing {
            withdraw = Some(format!("NLRI without {}", name(code)));
        }
    }
    if !cut {
        return untouched(withdraw);
    }
    let new_attrs_len: usize = keep.iter().map(|r| r.len()).sum();
    let total = HEADER_LEN + 2 + withdrawn_len + 2 + new_attrs_len + nlri.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&frame[..16]);
    out.extend_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&body[..2 + withdrawn_len]);
    out.extend_from_slice(
        &u16::try_from(new_attrs_len)
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    for r in keep {
        out.extend_from_slice(&attrs[r]);
    }
    out.extend_from_slice(nlri);
    Checked::Parse {
        frame: Cow::Owned(out),
        withdraw,
        discarded,
    }
}
