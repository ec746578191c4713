//! AF_PACKET sockets bound to one interface and one EtherType (packet(7)).
//!
//! nix opens and binds packet sockets safely but has no safe constructor for `sockaddr_ll`
//! (`LinkAddr` can only be built from a raw pointer), and tokio's `AsyncFd::register` is
//! `unsafe` (the caller promises the descriptor stays open and owned), so this one module
//! allows `unsafe` for those two calls.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, LinkAddr, SockFlag, SockType, SockaddrLike, bind, socket};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// Opens a non-blocking `SOCK_RAW` packet socket that receives only frames of `ethertype`
/// arriving on interface `ifindex` (not the ones this host sends) and sends whole Ethernet
/// frames out of that interface.
pub fn packet_socket(ifindex: u32, ethertype: u16) -> io::Result<OwnedFd> {
    // Protocol 0 at creation: the socket receives nothing until bind names the EtherType and
    // the interface, so no frame of another interface can slip in between.
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: i32::try_from(ifindex)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).expect("small struct");
    // SAFETY: `sll` is a fully initialised `sockaddr_ll` that lives across the call, and `len`
    // is exactly its size, so `from_raw` reads only initialised memory of the right type.
    let addr =
        unsafe { LinkAddr::from_raw(std::ptr::from_ref(&sll).cast::<libc::sockaddr>(), Some(len)) }
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    bind(fd.as_raw_fd(), &addr)?;
    Ok(fd)
}

/// [`packet_socket`], registered with the tokio reactor for readiness to read.
pub fn async_packet_socket(ifindex: u32, ethertype: u16) -> io::Result<AsyncFd<OwnedFd>> {
    let fd = packet_socket(ifindex, ethertype)?;
    // SAFETY: `fd` is an `OwnedFd` moved into the `AsyncFd`, which owns it from now on: it is
    // valid, and nothing else can close or replace it while it is registered.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)
}

/// A blocking packet socket on one interface, for tools and tests that send crafted frames or
/// watch the wire (the responder itself uses the async sockets).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket receiving frames of `ethertype` arriving on `ifname` and sending whole
    /// Ethernet frames out of it.
    pub fn open(ifname: &str, ethertype: u16) -> io::Result<Self> {
        let index = nix::net::if_::if_nametoindex(ifname)?;
        Ok(PacketSocket {
            fd: packet_socket(index, ethertype)?,
        })
    }

    /// Sends one Ethernet frame (header included).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        nix::unistd::write(&self.fd, frame)?;
        Ok(())
    }

    /// Receives one frame into `buf`, waiting at most `timeout`; `None` on timeout.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let deadline = Instant::now() + timeout;
        loop {
            match nix::unistd::read(&self.fd, buf) {
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(ms))?;
        }
    }
}
