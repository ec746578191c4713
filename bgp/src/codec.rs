//! BGP message framing, encoding and decoding: Herald's only door to `netgauze-bgp-pkt`.
//!
//! The rest of the BGP module speaks [`BgpMessage`] values; this module turns bytes into them
//! and back. Decoding never panics and never allocates more than the message in hand (a frame
//! is at most [`MAX_MESSAGE_LEN`] bytes, RFC 4271 §4.1): the deterministic mutation test in
//! `tests` and the fuzz target under `fuzz/` hold it to that.
//!
//! Malformed UPDATEs follow RFC 7606: [`super::attrs`] walks the attribute framing first
//! (wrong attribute lengths and flags, repeated attributes, missing mandatory ones), then
//! errors the library can step over (an attribute value malformed, a multicast prefix in a
//! unicast field) become *treat-as-withdraw* too — every NLRI in the message counts as
//! withdrawn; errors that leave the message unreadable (NLRI field corrupt, RFC 7606 §5.4;
//! MP_REACH_NLRI twice, §3(g)) end the session with a NOTIFICATION.

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::notification::{BgpNotificationMessage, CeaseError, MessageHeaderError};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use super::attrs;
use super::error::EncodeError;

/// Length of the fixed message header: marker, length, type (RFC 4271 §4.1).
pub const HEADER_LEN: usize = 19;

/// Largest message without the Extended Message capability (RFC 4271 §4.1), which Herald does
/// not advertise.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Longest shutdown communication text in bytes (RFC 8203 §2 as updated by RFC 9003).
pub const MAX_SHUTDOWN_TEXT: usize = 255;

/// Appends the wire form of `msg` to `out`.
pub fn encode(msg: &BgpMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let len = msg.len();
    if len > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooLong { len });
    }
    out.reserve(len);
    msg.write(out)
        .map_err(|e| EncodeError::Library(format!("{e:?}")))
}

/// Length of the first message in `buf` once all of it has arrived: `Ok(None)` while the
/// header or body is still incomplete, `Err` with the NOTIFICATION to send when the header is
/// invalid (RFC 4271 §6.1: marker not all ones, length outside 19..=4096).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, BgpNotificationMessage> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(BgpNotificationMessage::MessageHeaderError(
            MessageHeaderError::ConnectionNotSynchronized {
                value: Box::new([]),
            },
        ));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(BgpNotificationMessage::MessageHeaderError(
            MessageHeaderError::BadMessageLength {
                value: Box::new([buf[16], buf[17]]),
            },
        ));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// What one received frame turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A well-formed message.
    Message(BgpMessage),
    /// An UPDATE with an error RFC 7606 lets us step over: its NLRI count as withdrawn
    /// (§2, treat-as-withdraw). The parsed message (minus the bad attribute) is kept so its
    /// prefixes can be read.
    TreatAsWithdraw(BgpUpdateMessage),
    /// The frame cannot be accepted; send this NOTIFICATION and close (RFC 4271 §6).
    Error(BgpNotificationMessage),
}

/// Decodes frames for one connection; carries what the OPEN exchange negotiated (4-octet AS).
#[derive(Debug)]
pub struct Decoder {
    ctx: BgpParsingContext,
    asn4: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder for a fresh connection: 2-octet AS_PATH until [`set_asn4`](Self::set_asn4).
    pub fn new() -> Self {
        let ctx = BgpParsingContext::new(
            false,
            Default::default(),
            Default::default(),
            // RFC 7606 §5.1 / RFC 4271: a multicast prefix in a unicast field is ignored and
            // logged, not a session reset.
            false,
            false,
            // Unknown or malformed capabilities are ignored rather than failing the OPEN; the
            // session checks the ones it needs.
            false,
            // Malformed path attributes are recorded, not fatal: treat-as-withdraw.
            false,
        );
        Self { ctx, asn4: false }
    }

    /// Both sides advertised the 4-octet AS capability (RFC 6793 §3): AS_PATH carries 4-octet
    /// numbers from now on.
    pub fn set_asn4(&mut self, asn4: bool) {
        self.ctx.set_asn4(asn4);
        self.asn4 = asn4;
    }

    /// Decodes one complete frame (as delimited by [`frame_len`]).
    pub fn decode(&mut self, frame: &[u8]) -> Decoded {
        let (frame, withdraw) = match attrs::check(frame, self.asn4) {
            attrs::Checked::Reset(n) => return Decoded::Error(n),
            attrs::Checked::Parse {
                frame, withdraw, ..
            } => (frame, withdraw),
        };
        let mut reader = SliceReader::new(&frame);
        let parsed = BgpMessage::parse(&mut reader, &mut self.ctx);
        let ignored = self.ctx.reset_parsing_errors();
        match parsed {
            Ok(BgpMessage::Update(update)) if withdraw.is_some() => {
                Decoded::TreatAsWithdraw(update)
            }
            Ok(BgpMessage::Update(update))
                if !ignored.path_attr_errors().is_empty()
                    || !ignored.non_unicast_update_nlri().is_empty() =>
            {
                Decoded::TreatAsWithdraw(update)
            }
            Ok(msg) => Decoded::Message(msg),
            Err(err) => Decoded::Error(BgpNotificationMessage::from(err)),
        }
    }
}

/// A Cease NOTIFICATION, subcode Administrative Shutdown, carrying `text` as the shutdown
/// communication (RFC 8203 §2: one length octet, then UTF-8, cut at a character boundary to
/// at most [`MAX_SHUTDOWN_TEXT`] bytes).
pub fn shutdown_notification(text: &str) -> BgpNotificationMessage {
    BgpNotificationMessage::CeaseError(CeaseError::AdministrativeShutdown {
        value: shutdown_communication(text),
    })
}

/// The RFC 8203 data field for `text`.
pub fn shutdown_communication(text: &str) -> Box<[u8]> {
    let mut end = text.len().min(MAX_SHUTDOWN_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut value = Vec::with_capacity(end + 1);
    value.push(u8::try_from(end).unwrap_or(u8::MAX));
    value.extend_from_slice(&text.as_bytes()[..end]);
    value.into_boxed_slice()
}

/// The (code, subcode) pair of a NOTIFICATION, for logs and status (RFC 4271 §4.5).
pub fn notification_code(n: &BgpNotificationMessage) -> (u8, u8) {
    let mut buf = Vec::new();
    // The encoder only fails on lengths we never produce; a failure shows as (0, 0).
    if encode(&BgpMessage::Notification(n.clone()), &mut buf).is_ok() && buf.len() >= 21 {
        (buf[19], buf[20])
    } else {
        (0, 0)
    }
}

/// The names of a NOTIFICATION's error code and subcode, as RFC 4271 §4.5 and the IANA
/// registry give them (RFC 4486, 8203, 9384 for Cease), for logs and metric labels.
pub fn notification_names(code: u8, subcode: u8) -> (&'static str, &'static str) {
    let code_name = match code {
        1 => "Message Header Error",
        2 => "OPEN Message Error",
        3 => "UPDATE Message Error",
        4 => "Hold Timer Expired",
        5 => "Finite State Machine Error",
        6 => "Cease",
        7 => "ROUTE-REFRESH Message Error",
        _ => "Unknown",
    };
    let sub = match (code, subcode) {
        (_, 0) => "Unspecific",
        (1, 1) => "Connection Not Synchronized",
        (1, 2) => "Bad Message Length",
        (1, 3) => "Bad Message Type",
        (2, 1) => "Unsupported Version Number",
        (2, 2) => "Bad Peer AS",
        (2, 3) => "Bad BGP Identifier",
        (2, 4) => "Unsupported Optional Parameter",
        (2, 6) => "Unacceptable Hold Time",
        (2, 7) => "Unsupported Capability",
        (2, 11) => "Role Mismatch",
        (3, 1) => "Malformed Attribute List",
        (3, 2) => "Unrecognized Well-known Attribute",
        (3, 3) => "Missing Well-known Attribute",
        (3, 4) => "Attribute Flags Error",
        (3, 5) => "Attribute Length Error",
        (3, 6) => "Invalid ORIGIN Attribute",
        (3, 8) => "Invalid NEXT_HOP Attribute",
        (3, 9) => "Optional Attribute Error",
        (3, 10) => "Invalid Network Field",
        (3, 11) => "Malformed AS_PATH",
        (5, 1) => "Unexpected Message in OpenSent",
        (5, 2) => "Unexpected Message in OpenConfirm",
        (5, 3) => "Unexpected Message in Established",
        (6, 1) => "Maximum Number of Prefixes Reached",
        (6, 2) => "Administrative Shutdown",
        (6, 3) => "Peer De-configured",
        (6, 4) => "Administrative Reset",
        (6, 5) => "Connection Rejected",
        (6, 6) => "Other Configuration Change",
        (6, 7) => "Connection Collision Resolution",
        (6, 8) => "Out of Resources",
        (6, 9) => "Hard Reset",
        (6, 10) => "BFD Down",
        (7, 1) => "Invalid Message Length",
        _ => "Unknown",
    };
    (code_name, sub)
}

/// A human-readable reason for a NOTIFICATION: its code/subcode, plus the shutdown
/// communication text when one is present (RFC 8203).
pub fn describe_notification(n: &BgpNotificationMessage) -> String {
    let (code, subcode) = notification_code(n);
    let (code_name, sub_name) = notification_names(code, subcode);
    let mut out = format!("notification {code}/{subcode} ({code_name}, {sub_name})");
    if let BgpNotificationMessage::CeaseError(
        CeaseError::AdministrativeShutdown { value } | CeaseError::AdministrativeReset { value },
    ) = n
        && let Some((&len, text)) = value.split_first()
        && usize::from(len) <= text.len()
    {
        let text = String::from_utf8_lossy(&text[..usize::from(len)]);
        if !text.is_empty() {
            out.push_str(&format!(" \"{text}\""));
        }
    }
    out
}
