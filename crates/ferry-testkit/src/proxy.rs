//! A fault-injecting TCP proxy on 127.0.0.1: what a bad network does to an SSH connection.
//!
//! [`FaultProxy`] forwards every connection it accepts to one target (a test sshd) and, on
//! the test's command or once a connection has carried a given number of bytes from the
//! client, does to it what the network does on a bad day:
//!
//! - [`NetFault::Cut`]: both sides are closed at once (a FIN to the client and to the server,
//!   as when a NAT or firewall on the way gives up on the flow and answers for it);
//! - [`NetFault::Stall`]: nothing more is forwarded in either direction and nothing is
//!   closed: no FIN, no RST, as when a link goes down or a box freezes. Only a keepalive
//!   notices this (ssh's `ServerAliveInterval` on the client, sshd's `ClientAliveInterval` on
//!   the jump box).
//!
//! New connections after a fault pass again ([`FaultProxy::set`] `None`), so that a test can
//! run the next backup through the same proxy. Every thread is bounded: pumps poll with a
//! 50 ms read timeout and end when the proxy drops.

use crate::KitError;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to the connection that reaches the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetFault {
    /// Close both sides (FIN both ways).
    Cut,
    /// Forward nothing more either way; close nothing.
    Stall,
}

/// When and which fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// The fault.
    pub fault: NetFault,
    /// It fires once a connection has forwarded this many bytes from client to server
    /// (0: at once, on every open connection and on each new one).
    pub after_client_bytes: u64,
}

struct Shared {
    plan: Mutex<Option<FaultPlan>>,
    stop: AtomicBool,
    /// Connections a fault fired on.
    fired: AtomicU64,
    /// Connections accepted.
    accepted: AtomicU64,
}

/// A TCP proxy on a free loopback port in front of `target`; stops (and closes every
/// connection) when dropped.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listen on 127.0.0.1 (a free port) and forward to `target`.
    pub fn start(target: SocketAddr) -> Result<Self, KitError> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(KitError::io("binding", "127.0.0.1:0"))?;
        let port = listener
            .local_addr()
            .map_err(KitError::io(
                "reading the address of",
                "the proxy's listener",
            ))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(KitError::io("configuring", "the proxy's listener"))?;
        let shared = Arc::new(Shared {
            plan: Mutex::new(None),
            stop: AtomicBool::new(false),
            fired: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, target, s));
        Ok(Self {
            port,
            shared,
            accept: Some(accept),
        })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Arm a fault (or `None`: pass everything from now on; connections already cut or
    /// stalled stay so).
    pub fn set(&self, plan: Option<FaultPlan>) {
        *self.shared.plan.lock().unwrap_or_else(|p| p.into_inner()) = plan;
    }

    /// How many connections a fault fired on so far.
    pub fn fired(&self) -> u64 {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let s = shared.clone();
                conns.push(std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                    {
                        connection(client, server, s);
                    }
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// One proxied connection: two pumps; the client-to-server one counts bytes and fires the
/// fault. Returns when the proxy stops or both directions ended.
fn connection(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let state = Arc::new(ConnState {
        up_bytes: AtomicU64::new(0),
        fault: Mutex::new(None),
        closed: AtomicBool::new(false),
    });
    let pair = (|| {
        Some((
            client.try_clone().ok()?,
            server.try_clone().ok()?,
            client.try_clone().ok()?,
            server.try_clone().ok()?,
        ))
    })();
    let Some((c_read, s_write, c_write, s_read)) = pair else {
        return;
    };
    let (st, sh) = (state.clone(), shared.clone());
    let up = std::thread::spawn(move || pump(c_read, s_write, &st, &sh, true));
    pump(s_read, c_write, &state, &shared, false);
    let _ = up.join();
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

struct ConnState {
    up_bytes: AtomicU64,
    fault: Mutex<Option<NetFault>>,
    closed: AtomicBool,
}

impl ConnState {
    fn fault(&self) -> Option<NetFault> {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Forward `from` to `to` until EOF, an error, a cut, or the proxy stopping. While stalled,
/// nothing is read (so the sender's buffers fill) and nothing is closed.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    conn: &ConnState,
    shared: &Shared,
    client_to_server: bool,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) || conn.closed.load(Ordering::SeqCst) {
            break;
        }
        // Arm this connection once its client has sent enough.
        if conn.fault().is_none() {
            let plan = *shared.plan.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = plan
                && conn.up_bytes.load(Ordering::SeqCst) >= p.after_client_bytes
            {
                *conn.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(p.fault);
                shared.fired.fetch_add(1, Ordering::SeqCst);
            }
        }
        match conn.fault() {
            Some(NetFault::Cut) => {
                conn.closed.store(true, Ordering::SeqCst);
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                break;
            }
            Some(NetFault::Stall) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            None => {}
        }
        // Read at most what keeps the threshold exact, so the fault fires mid-stream
        // at the byte the test asked for.
        let mut want = buf.len();
        if client_to_server {
            let plan = *shared.plan.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = plan {
                let left = p
                    .after_client_bytes
                    .saturating_sub(conn.up_bytes.load(Ordering::SeqCst));
                if left > 0 {
                    want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
                }
            }
        }
        match from.read(&mut buf[..want]) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                break;
            }
            Ok(n) => {
                if client_to_server {
                    conn.up_bytes.fetch_add(n as u64, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An echo server: each connection's bytes come back.
    fn echo() -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            for c in l.incoming().take(3) {
                let mut c = c.unwrap();
                std::thread::spawn(move || {
                    let mut r = c.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut c);
                });
            }
        });
        (addr, h)
    }

    #[test]
    fn passes_cuts_and_stalls_at_the_byte_asked_for() {
        let (addr, _h) = echo();
        let p = FaultProxy::start(addr).unwrap();

        // Pass.
        let mut c = TcpStream::connect(("127.0.0.1", p.port())).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");

        // Cut after 10 bytes from the client: at most those 10 come back, then EOF (not a
        // read that waits).
        p.set(Some(FaultPlan {
            fault: NetFault::Cut,
            after_client_bytes: 10,
        }));
        let mut c = TcpStream::connect(("127.0.0.1", p.port())).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(&[7u8; 100]);
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert!(back.len() <= 10, "{back:?}");
        assert_eq!(p.fired(), 1);

        // Stall after 10 bytes: at most those come back, then nothing, and no EOF either.
        p.set(Some(FaultPlan {
            fault: NetFault::Stall,
            after_client_bytes: 10,
        }));
        let mut c = TcpStream::connect(("127.0.0.1", p.port())).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        c.write_all(&[9u8; 100]).unwrap();
        let mut back = Vec::new();
        let mut one = [0u8; 64];
        let e = loop {
            match c.read(&mut one) {
                Ok(0) => panic!("a stalled connection was closed"),
                Ok(n) => back.extend_from_slice(&one[..n]),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e:?}"
        );
        assert!(back.len() <= 10, "{back:?}");
        assert_eq!(p.fired(), 2);
        p.set(None);
        assert_eq!(p.accepted(), 3);
    }
}
