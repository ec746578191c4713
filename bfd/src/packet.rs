//! BFD Control packet codec (RFC 5880 §4.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! All multi-byte fields are network byte order; intervals are microseconds. Herald never sends
//! the optional authentication section and rejects packets that carry one.

use crate::error::BfdPacketError;

/// The only protocol version defined (RFC 5880 §4.1).
pub const VERSION: u8 = 1;
/// Length of a Control packet without authentication section, in bytes.
pub const CONTROL_PACKET_LEN: usize = 24;
/// Minimum Length field when the A bit is set: 24 bytes plus the 2-byte auth type and length.
const MIN_LEN_WITH_AUTH: u8 = 26;

/// Session state as carried in the Sta field and kept in bfd.SessionState (RFC 5880 §4.1,
/// §6.8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Administratively held down (0).
    AdminDown,
    /// Down (1).
    Down,
    /// Initialising: the remote is heard but has not yet heard us (2).
    Init,
    /// Up (3).
    Up,
}

impl State {
    /// Wire value (2 bits).
    pub fn to_bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// From the 2-bit wire value; the upper bits are ignored.
    pub fn from_bits(bits: u8) -> State {
        match bits & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

/// Diagnostic code: why the sender's session last changed state (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    /// 0: no diagnostic.
    None,
    /// 1: control detection time expired.
    ControlDetectionTimeExpired,
    /// 2: echo function failed.
    EchoFunctionFailed,
    /// 3: neighbor signaled session down.
    NeighborSignaledSessionDown,
    /// 4: forwarding plane reset.
    ForwardingPlaneReset,
    /// 5: path down.
    PathDown,
    /// 6: concatenated path down.
    ConcatenatedPathDown,
    /// 7: administratively down.
    AdministrativelyDown,
    /// 8: reverse concatenated path down.
    ReverseConcatenatedPathDown,
    /// 9–31: reserved for future use; kept so that decoding is total.
    Reserved(u8),
}

impl Diag {
    /// Wire value (5 bits).
    pub fn to_bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(v) => v & 0x1f,
        }
    }

    /// From the 5-bit wire value; the upper bits are ignored.
    pub fn from_bits(bits: u8) -> Diag {
        match bits & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledSessionDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            v => Diag::Reserved(v),
        }
    }
}

/// The six flag bits of the second byte (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags {
    /// P: the sender is running a Poll Sequence and asks for a Final.
    pub poll: bool,
    /// F: answers a Poll.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// A: an authentication section follows. Never set by Herald.
    pub authentication_present: bool,
    /// D: the sender wishes to run Demand mode.
    pub demand: bool,
    /// M: reserved for multipoint; must be zero.
    pub multipoint: bool,
}

impl Flags {
    fn to_bits(self) -> u8 {
        (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.authentication_present) << 2)
            | (u8::from(self.demand) << 1)
            | u8::from(self.multipoint)
    }

    fn from_bits(bits: u8) -> Flags {
        Flags {
            poll: bits & (1 << 5) != 0,
            final_: bits & (1 << 4) != 0,
            control_plane_independent: bits & (1 << 3) != 0,
            authentication_present: bits & (1 << 2) != 0,
            demand: bits & (1 << 1) != 0,
            multipoint: bits & 1 != 0,
        }
    }
}

/// A decoded BFD Control packet without authentication section.
///
/// Version is always [`VERSION`] and Length always [`CONTROL_PACKET_LEN`] on encode, so neither
/// is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    /// Diagnostic code of the sender.
    pub diag: Diag,
    /// Sender's session state.
    pub state: State,
    /// P, F, C, A, D, M.
    pub flags: Flags,
    /// Detection time multiplier of the sender.
    pub detect_mult: u8,
    /// Sender's discriminator; never zero in a valid packet.
    pub my_discr: u32,
    /// The discriminator the sender received from us, or zero if unknown.
    pub your_discr: u32,
    /// Minimum interval the sender would like to transmit at, µs.
    pub desired_min_tx_us: u32,
    /// Minimum interval the sender can receive at, µs; zero: send no periodic packets.
    pub required_min_rx_us: u32,
    /// Minimum echo interval the sender can receive at, µs; zero: no echo.
    pub required_min_echo_rx_us: u32,
}

impl ControlPacket {
    /// Decodes and validates a Control packet from a UDP payload.
    ///
    /// Applies the reception checks of RFC 5880 §6.8.6 that depend on the packet alone, in the
    /// RFC's order, and additionally rejects the A bit (Herald runs without authentication).
    /// Bytes past the Length field are ignored. The checks that need session state
    /// (discriminator look-up, Your Discriminator zero outside Down) live in the session.
    /// Never panics.
    pub fn decode(buf: &[u8]) -> Result<ControlPacket, BfdPacketError> {
        if buf.len() < 4 {
            return Err(BfdPacketError::Truncated { len: buf.len() });
        }
        let version = buf[0] >> 5;
        if version != VERSION {
            return Err(BfdPacketError::Version { version });
        }
        let flags = Flags::from_bits(buf[1]);
        let length = buf[3];
        let minimum = if flags.authentication_present {
            MIN_LEN_WITH_AUTH
        } else {
            CONTROL_PACKET_LEN as u8
        };
        if length < minimum {
            return Err(BfdPacketError::LengthTooSmall { length, minimum });
        }
        if usize::from(length) > buf.len() {
            return Err(BfdPacketError::LengthExceedsPayload {
                length,
                payload: buf.len(),
            });
        }
        // Length ≥ 24 and ≤ payload, so the fixed fields are present from here on.
        let detect_mult = buf[2];
        if detect_mult == 0 {
            return Err(BfdPacketError::ZeroDetectMult);
        }
        if flags.multipoint {
            return Err(BfdPacketError::Multipoint);
        }
        let word = |at: usize| u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let my_discr = word(4);
        if my_discr == 0 {
            return Err(BfdPacketError::ZeroMyDiscriminator);
        }
        if flags.authentication_present {
            return Err(BfdPacketError::AuthenticationUnsupported);
        }
        Ok(ControlPacket {
            diag: Diag::from_bits(buf[0]),
            state: State::from_bits(buf[1] >> 6),
            flags,
            detect_mult,
            my_discr,
            your_discr: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        })
    }

    /// Encodes the packet: version 1, Length 24, no authentication section.
    pub fn encode(&self) -> [u8; CONTROL_PACKET_LEN] {
        let mut out = [0u8; CONTROL_PACKET_LEN];
        out[0] = (VERSION << 5) | self.diag.to_bits();
        out[1] = (self.state.to_bits() << 6) | self.flags.to_bits();
        out[2] = self.detect_mult;
        out[3] = CONTROL_PACKET_LEN as u8;
        out[4..8].copy_from_slice(&self.my_discr.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discr.to_be_bytes());
        out[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        out[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        out[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diag: Diag::None,
            state: State::Down,
            flags: Flags::default(),
            detect_mult: 3,
            my_discr: 0x0102_0304,
            your_discr: 0,
            desired_min_tx_us: 1_000_000,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn encodes_fields_at_rfc_5880_offsets() {
        let mut p = sample();
        p.diag = Diag::NeighborSignaledSessionDown;
        p.state = State::Up;
        p.flags.poll = true;
        let b = p.encode();
        assert_eq!(b[0], 0b001_00011);
        assert_eq!(b[1], 0b11_100000);
        assert_eq!(b[2], 3);
        assert_eq!(b[3], 24);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(&b[12..16], &1_000_000u32.to_be_bytes());
        assert_eq!(&b[16..20], &300_000u32.to_be_bytes());
    }

    #[test]
    fn decodes_what_it_encodes() {
        let p = sample();
        assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn ignores_bytes_past_the_length_field() {
        let p = sample();
        let mut b = p.encode().to_vec();
        b.extend_from_slice(&[0xff; 8]);
        assert_eq!(ControlPacket::decode(&b), Ok(p));
    }

    #[test]
    fn rejects_each_malformed_packet_with_its_own_error() {
        use BfdPacketError::*;
        let good = sample().encode();
        let cases: Vec<(&str, Vec<u8>, BfdPacketError)> = vec![
            ("empty", vec![], Truncated { len: 0 }),
            ("three bytes", good[..3].to_vec(), Truncated { len: 3 }),
            (
                "version 0",
                patch(&good, 0, good[0] & 0x1f),
                Version { version: 0 },
            ),
            ("version 2", patch(&good, 0, 2 << 5), Version { version: 2 }),
            (
                "length 23",
                patch(&good, 3, 23),
                LengthTooSmall {
                    length: 23,
                    minimum: 24,
                },
            ),
            (
                "length beyond payload",
                good[..20].to_vec(),
                LengthExceedsPayload {
                    length: 24,
                    payload: 20,
                },
            ),
            ("detect mult 0", patch(&good, 2, 0), ZeroDetectMult),
            ("multipoint", patch(&good, 1, good[1] | 1), Multipoint),
            (
                "my discriminator 0",
                zero_my_discr(&good),
                ZeroMyDiscriminator,
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(ControlPacket::decode(&bytes), Err(want), "{name}");
        }
    }

    #[test]
    fn rejects_authenticated_packets_as_unsupported() {
        let mut b = sample().encode().to_vec();
        b[1] |= 1 << 2;
        b[3] = 28;
        b.extend_from_slice(&[1, 4, 0, 0]); // simple password, len 4
        assert_eq!(
            ControlPacket::decode(&b),
            Err(BfdPacketError::AuthenticationUnsupported)
        );
    }

    #[test]
    fn requires_26_bytes_when_authentication_is_present() {
        let mut b = sample().encode();
        b[1] |= 1 << 2;
        assert_eq!(
            ControlPacket::decode(&b),
            Err(BfdPacketError::LengthTooSmall {
                length: 24,
                minimum: 26
            })
        );
    }

    fn patch(b: &[u8], at: usize, v: u8) -> Vec<u8> {
        let mut b = b.to_vec();
        b[at] = v;
        b
    }

    fn zero_my_discr(b: &[u8]) -> Vec<u8> {
        let mut b = b.to_vec();
        b[4..8].fill(0);
        b
    }

    fn state() -> impl Strategy<Value = State> {
        (0u8..4).prop_map(State::from_bits)
    }

    fn packet() -> impl Strategy<Value = ControlPacket> {
        (
            (0u8..32, state(), any::<[bool; 4]>(), 1u8..=255),
            (
                1u32..,
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
            ),
        )
            .prop_map(
                |((diag, state, f, detect_mult), (my, your, tx, rx, echo))| ControlPacket {
                    diag: Diag::from_bits(diag),
                    state,
                    flags: Flags {
                        poll: f[0],
                        final_: f[1],
                        control_plane_independent: f[2],
                        authentication_present: false,
                        demand: f[3],
                        multipoint: false,
                    },
                    detect_mult,
                    my_discr: my,
                    your_discr: your,
                    desired_min_tx_us: tx,
                    required_min_rx_us: rx,
                    required_min_echo_rx_us: echo,
                },
            )
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ControlPacket::decode(&bytes);
        }

        #[test]
        fn decoding_an_encoded_packet_gives_it_back(p in packet()) {
            prop_assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
        }

        #[test]
        fn a_decoded_packet_reencodes_to_the_same_first_24_bytes(
            mut bytes in proptest::collection::vec(any::<u8>(), 24..40),
            length in 24u8..40,
        ) {
            // Mostly plausible headers, so that most cases get past the version and length
            // checks and exercise the field decoding.
            bytes[0] = (VERSION << 5) | (bytes[0] & 0x1f);
            bytes[3] = length;
            if let Ok(p) = ControlPacket::decode(&bytes) {
                let mut want = bytes[..24].to_vec();
                want[3] = 24;
                prop_assert_eq!(p.encode().to_vec(), want);
            }
        }
    }
}
