//! Authenticated encryption of gossip datagrams with a shared key (XChaCha20-Poly1305).
//!
//! Datagram layout: `kind (1) | nonce (24) | ciphertext | tag (16)`. The kind byte is bound
//! as associated data, so a SWIM message cannot be replayed as a facts message. Nonces are
//! random; 192 bits make collisions negligible without coordinating counters across restarts.
//!
//! Not covered: replay of a captured datagram within the cluster (SWIM tolerates duplicated
//! pings and acks; facts carry a sequence number and older ones are dropped).

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;

use crate::error::L2Error;

/// Length of the shared key.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// What a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A SWIM message (foca).
    Swim,
    /// A node's own facts (which interfaces have carrier).
    Facts,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Swim => 1,
            Kind::Facts => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Kind::Swim),
            2 => Some(Kind::Facts),
            _ => None,
        }
    }
}

/// The shared cluster key.
#[derive(Clone)]
pub struct GossipKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey(..)")
    }
}

impl GossipKey {
    /// A key from its 32 bytes.
    pub fn new(key: [u8; KEY_LEN]) -> Self {
        GossipKey {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Reads a key file (a mounted Secret): 32 raw bytes, or 64 hexadecimal digits with
    /// optional surrounding whitespace.
    pub fn from_file(path: &Path) -> Result<Self, L2Error> {
        let err = |reason: String| L2Error::Key {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("");
        let key: [u8; KEY_LEN] =
            if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                let mut key = [0u8; KEY_LEN];
                for (i, byte) in key.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                        .map_err(|e| err(e.to_string()))?;
                }
                key
            } else {
                bytes.as_slice().try_into().map_err(|_| {
                    err(format!(
                        "expected {KEY_LEN} bytes or {} hex digits, found {} bytes",
                        2 * KEY_LEN,
                        bytes.len()
                    ))
                })?
            };
        Ok(GossipKey::new(key))
    }

    /// Encrypts and authenticates `plaintext` as a datagram of `kind`.
    pub fn seal(&self, kind: Kind, plaintext: &[u8], rng: &mut impl Rng) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = [kind.byte()];
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("gossip datagrams are far below the AEAD length limit");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(kind.byte());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Checks and decrypts a datagram; `None` when it is truncated, of unknown kind, or was not
    /// sealed with this key (or was altered).
    pub fn open(&self, datagram: &[u8]) -> Option<(Kind, Vec<u8>)> {
        if datagram.len() < 1 + NONCE_LEN + TAG_LEN {
            return None;
        }
        let kind = Kind::from_byte(datagram[0])?;
        let nonce: [u8; NONCE_LEN] = datagram[1..=NONCE_LEN].try_into().ok()?;
        let plaintext = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &datagram[1 + NONCE_LEN..],
                    aad: &datagram[..1],
                },
            )
            .ok()?;
        Some((kind, plaintext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> rand::rngs::StdRng {
        rand::make_rng()
    }

    #[test]
    fn sealed_datagram_opens_with_the_same_key_only() {
        let (a, b) = (GossipKey::new([7; KEY_LEN]), GossipKey::new([8; KEY_LEN]));
        let sealed = a.seal(Kind::Swim, b"ping", &mut rng());
        assert_eq!(a.open(&sealed), Some((Kind::Swim, b"ping".to_vec())));
        assert_eq!(b.open(&sealed), None);
    }

    #[test]
    fn any_altered_byte_is_rejected() {
        let key = GossipKey::new([7; KEY_LEN]);
        let sealed = key.seal(Kind::Facts, b"links", &mut rng());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(key.open(&bad), None, "flipped byte {i}");
        }
        for len in 0..sealed.len() {
            assert_eq!(key.open(&sealed[..len]), None, "truncated to {len}");
        }
    }

    #[test]
    fn key_file_takes_raw_bytes_or_hex() {
        let dir = std::env::temp_dir().join(format!("herald-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("raw");
        std::fs::write(&raw, [0xab; KEY_LEN]).unwrap();
        let hex = dir.join("hex");
        std::fs::write(&hex, format!("{}\n", "ab".repeat(KEY_LEN))).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, b"too short").unwrap();
        let (k1, k2) = (
            GossipKey::from_file(&raw).unwrap(),
            GossipKey::from_file(&hex).unwrap(),
        );
        let sealed = k1.seal(Kind::Swim, b"x", &mut rng());
        assert!(k2.open(&sealed).is_some(), "same key either way");
        let err = GossipKey::from_file(&short).unwrap_err().to_string();
        assert!(err.contains("expected 32 bytes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
