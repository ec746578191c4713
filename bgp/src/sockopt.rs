//! Socket options no safe wrapper offers: TCP MD5 signatures (RFC 2385, `TCP_MD5SIG`) and the
//! minimum received TTL for GTSM (RFC 5082, `IP_MINTTL` / `IPV6_MINHOPCOUNT`).
//!
//! This is the BGP module's only unsafe code: two `setsockopt` calls on a descriptor the
//! caller owns, with buffers that live for the duration of the call.
#![allow(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// Longest key the kernel accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from `linux/tcp.h`: a `sockaddr_storage` (128 bytes), flags, prefix
/// length, key length, interface index, key.
#[repr(C, align(8))]
struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; MD5_MAX_KEY_LEN],
}

fn sockaddr_bytes(peer: IpAddr) -> [u8; 128] {
    let mut out = [0u8; 128];
    match peer {
        IpAddr::V4(a) => {
            // struct sockaddr_in: family (host order), port, address.
            out[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            // struct sockaddr_in6: family, port, flowinfo, address, scope id.
            out[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out[8..24].copy_from_slice(&a.octets());
        }
    }
    out
}

fn setsockopt<T>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to a live, initialised `T` of `len` bytes for the whole call; the
    // kernel only reads it. An invalid descriptor or option yields an error, not UB.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Installs (or with an empty `key`, removes) the TCP MD5 key for connections with `peer` on
/// `socket` (connecting or listening; RFC 2385).
pub fn set_md5_key(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "md5 key longer than 80 bytes",
        ));
    }
    let mut sig = TcpMd5Sig {
        addr: sockaddr_bytes(peer),
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MD5_MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(socket, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// Drops received packets whose TTL (hop limit) is below `min` (GTSM, RFC 5082 §3).
pub fn set_min_ttl(socket: &impl AsRawFd, ipv6: bool, min: u8) -> io::Result<()> {
    let value = libc::c_int::from(min);
    if ipv6 {
        setsockopt(socket, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &value)
    } else {
        setsockopt(socket, libc::IPPROTO_IP, libc::IP_MINTTL, &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_struct_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn md5_key_and_min_ttl_are_accepted_by_the_kernel() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_md5_key(&s, "127.0.0.2".parse().unwrap(), b"secret").unwrap();
        set_md5_key(&s, "127.0.0.2".parse().unwrap(), b"").unwrap();
        set_min_ttl(&s, false, 254).unwrap();
        assert!(set_md5_key(&s, "127.0.0.2".parse().unwrap(), &[0; 81]).is_err());
    }
}
