//! Reads and writes on the ranks' TCP connections, each bounded by a deadline, and the framing
//! of [`super::TcpGroup`]'s messages: a tag byte, a little-endian `u64` length, the payload.

use std::io::{Error, ErrorKind, Read, Result, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Bytes moved per system call, so that the deadline is checked between chunks.
const CHUNK: usize = 1 << 20;

fn left(deadline: Instant) -> Result<std::time::Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(Error::new(ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(d)
}

/// Fills `buf` from `s` before `deadline`: `TimedOut` when it passes, `UnexpectedEof` when
/// the peer closed the connection.
pub(crate) fn read_exact_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<()> {
    let mut at = 0;
    while at < buf.len() {
        s.set_read_timeout(Some(left(deadline)?))?;
        let end = (at + CHUNK).min(buf.len());
        match s.read(&mut buf[at..end]) {
            Ok(0) => {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "the connection was closed",
                ))
            }
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Error::new(ErrorKind::TimedOut, "deadline passed"))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` to `s` before `deadline`.
pub(crate) fn write_all(s: &mut TcpStream, buf: &[u8], deadline: Instant) -> Result<()> {
    for chunk in buf.chunks(CHUNK) {
        s.set_write_timeout(Some(left(deadline)?))?;
        match s.write_all(chunk) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Error::new(ErrorKind::TimedOut, "deadline passed"))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes one frame.
pub(crate) fn send_frame(s: &mut TcpStream, tag: u8, body: &[u8], deadline: Instant) -> Result<()> {
    let mut head = [0u8; 9];
    head[0] = tag;
    head[1..].copy_from_slice(&(body.len() as u64).to_le_bytes());
    write_all(s, &head, deadline)?;
    write_all(s, body, deadline)
}

/// Reads one frame: `(tag, payload)`. Payloads above `max` bytes are refused (a corrupt or
/// foreign stream).
pub(crate) fn recv_frame(s: &mut TcpStream, deadline: Instant, max: u64) -> Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    read_exact_by(s, &mut head, deadline)?;
    let n = u64::from_le_bytes(head[1..].try_into().expect("8 bytes"));
    if n > max {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("a frame of {n} bytes (more than {max}): not a deepsynth rank's message"),
        ));
    }
    let mut body = vec![0u8; n as usize];
    read_exact_by(s, &mut body, deadline)?;
    Ok((head[0], body))
}
