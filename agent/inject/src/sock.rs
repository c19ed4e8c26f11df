//! Unix `SOCK_SEQPACKET` sockets: one frame per message, so a frame is sent
//! whole or not at all (never half a frame to resynchronise), and the
//! receiver learns the sender's credentials with `SO_PEERCRED`.
//!
//! Every socket is non-blocking and close-on-exec.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {} contains a NUL byte", path.display()),
        ));
    }
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is {} bytes, longer than the {} a Unix socket allows",
                path.display(),
                bytes.len(),
                addr.sun_path.len() - 1
            ),
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us.
    let fd = cvt(unsafe {
        libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `fd` was just returned by socket() and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects to the agent at `path`. Fails at once (no waiting) when nobody
/// listens or the listener's backlog is full.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let (addr, len) = address(path)?;
    let fd = socket()?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) })?;
    Ok(fd)
}

/// Binds and listens at `path` (which must not exist).
pub fn listen(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let (addr, len) = address(path)?;
    let fd = socket()?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) })?;
    // SAFETY: plain syscall on our fd.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(fd)
}

/// Accepts one pending connection (`WouldBlock` when none is pending).
pub fn accept(listener: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed by accept4.
    let fd = cvt(unsafe {
        libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    })?;
    // SAFETY: a fresh fd from accept4, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends one message without blocking and without raising SIGPIPE.
pub fn send(fd: RawFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: `msg` is valid for `msg.len()` bytes.
    let n = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // A SOCK_SEQPACKET send is all or nothing.
    debug_assert_eq!(n as usize, msg.len());
    Ok(())
}

/// One received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A message of this many bytes, all in the buffer.
    Message(usize),
    /// A message longer than the buffer (its real length); its tail is lost.
    Truncated(usize),
    /// The peer closed the connection.
    Closed,
}

/// Receives one message without blocking (`WouldBlock` when none waits).
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes. MSG_TRUNC makes
    // the call return the message's real length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    Ok(if n == 0 {
        Received::Closed
    } else if n > buf.len() {
        Received::Truncated(n)
    } else {
        Received::Message(n)
    })
}

/// Credentials of the process at the other end, as the kernel saw them when
/// it connected (pid translated into the caller's pid namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub fn peer_cred(fd: RawFd) -> io::Result<PeerCred> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out-pointers of the sizes given.
    cvt(unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len)
    })?;
    Ok(PeerCred { pid: cred.pid, uid: cred.uid, gid: cred.gid })
}

/// Waits up to `timeout_ms` for `fd` to accept a message; true when it does.
pub fn wait_writable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(n > 0 && p.revents & libc::POLLOUT != 0)
}

/// Asks for a larger send buffer, so bursts ride out a busy agent; the kernel
/// caps it (`net.core.wmem_max`), and failing is harmless.
pub fn grow_send_buffer(fd: RawFd, bytes: i32) {
    // SAFETY: `bytes` is a valid c_int option value.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_boundaries_and_the_peer_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = listen(&path, 8).unwrap();
        let c = connect(&path).unwrap();
        let s = accept(l.as_raw_fd()).unwrap();
        send(c.as_raw_fd(), b"first").unwrap();
        send(c.as_raw_fd(), b"second message").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(recv(s.as_raw_fd(), &mut buf).unwrap(), Received::Message(5));
        assert_eq!(&buf[..5], b"first");
        assert_eq!(recv(s.as_raw_fd(), &mut buf).unwrap(), Received::Truncated(14));
        assert_eq!(recv(s.as_raw_fd(), &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let me = peer_cred(s.as_raw_fd()).unwrap();
        // SAFETY: trivial libc getters.
        assert_eq!((me.pid, me.uid), (std::process::id() as i32, unsafe { libc::geteuid() }));
        drop(c);
        assert_eq!(recv(s.as_raw_fd(), &mut buf).unwrap(), Received::Closed);
    }

    #[test]
    fn nobody_listening_fails_at_once_and_long_paths_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = connect(&dir.path().join("absent.sock")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let long = dir.path().join("x".repeat(120));
        let e = connect(&long).unwrap_err().to_string();
        assert!(e.contains("longer than the 107"), "{e}");
    }

    #[test]
    fn a_full_peer_refuses_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = listen(&path, 8).unwrap();
        let c = connect(&path).unwrap();
        let _s = accept(l.as_raw_fd()).unwrap();
        let msg = vec![0u8; 60_000];
        let mut sent = 0;
        let err = loop {
            match send(c.as_raw_fd(), &msg) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 100_000, "never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(!wait_writable(c.as_raw_fd(), 10).unwrap());
    }
}
