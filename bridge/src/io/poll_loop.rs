//! The non-blocking socket loop: one `mio` poll (epoll) per shard thread.
//!
//! Each endpoint's UDP socket is registered edge-triggered; on readiness the loop
//! reads until `WouldBlock`, hands each datagram to the core with one `now` per
//! wake-up, and sends everything the core queued before polling again.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use ringbridge_control::media::MediaError;

use super::shard::{
    AfterCommand, PortBinder, PreparedDriver, SendTotals, ShardContext, ShardSpec, handle_command,
};
use crate::proto::shard::ShardCore;
use crate::proto::transmit::TxQueue;

/// Token of the command waker; socket tokens are their port numbers.
pub const WAKER: Token = Token(usize::MAX);

/// Longest sleep when no timer is due (keeps stats fresh).
const MAX_SLEEP: Duration = Duration::from_millis(200);

/// Flush the send queue when it holds this many datagrams.
const FLUSH_AT: usize = 256;

struct Sockets {
    by_port: HashMap<u16, mio::net::UdpSocket>,
    next: u16,
    range: (u16, u16),
}

impl Sockets {
    /// Binds a free port of the range, round-robin from the last one used.
    fn bind(&mut self, spec: &ShardSpec, poll: &Poll) -> Result<u16, MediaError> {
        let (lo, hi) = self.range;
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let port = self.next;
            self.next = if self.next >= hi { lo } else { self.next + 1 };
            if self.by_port.contains_key(&port) {
                continue;
            }
            let Ok(std_sock) = UdpSocket::bind(SocketAddr::new(spec.bind, port)) else {
                continue;
            };
            if std_sock.set_nonblocking(true).is_err() {
                continue;
            }
            let mut sock = mio::net::UdpSocket::from_std(std_sock);
            if poll
                .registry()
                .register(&mut sock, Token(usize::from(port)), Interest::READABLE)
                .is_err()
            {
                continue;
            }
            self.by_port.insert(port, sock);
            return Ok(port);
        }
        Err(MediaError::Overloaded("no free media port".into()))
    }

    fn release(&mut self, port: u16, poll: &Poll) {
        if let Some(mut sock) = self.by_port.remove(&port) {
            let _ = poll.registry().deregister(&mut sock);
        }
    }
}

/// Makes the epoll instance and its waker; the loop runs on the shard thread.
pub fn prepare(_spec: &ShardSpec) -> std::io::Result<PreparedDriver> {
    let poll = Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    Ok(PreparedDriver {
        waker,
        run: Box::new(move |ctx| run(ctx, poll)),
    })
}

/// Runs the shard until a `Shutdown` command or the command queue closes.
fn run(ctx: ShardContext, mut poll: Poll) {
    let ShardContext {
        spec,
        commands,
        events: events_out,
        stats,
    } = ctx;
    let mut core = ShardCore::new(spec.core_config.clone(), Instant::now());
    let mut sockets = Sockets {
        by_port: HashMap::new(),
        next: spec.ports.0,
        range: spec.ports,
    };
    let mut events = Events::with_capacity(1024);
    let mut tx = TxQueue::with_capacity(1024);
    let mut buf = vec![0u8; 2048];
    let (mut sent_packets, mut sent_bytes) = (0u64, 0u64);
    let mut send_errors = 0u64;

    loop {
        let timeout = core
            .poll_timeout()
            .map_or(MAX_SLEEP, |t| t.saturating_duration_since(Instant::now()))
            .min(MAX_SLEEP);
        if let Err(e) = poll.poll(&mut events, Some(timeout))
            && e.kind() != ErrorKind::Interrupted
        {
            tracing::error!(shard = spec.index, error = %e, "poll failed; shard stops");
            return;
        }
        let now = Instant::now();
        let mut wake = false;
        for event in events.iter() {
            if event.token() == WAKER {
                wake = true;
                continue;
            }
            let Ok(port) = u16::try_from(event.token().0) else {
                continue;
            };
            while let Some(sock) = sockets.by_port.get(&port) {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        core.handle_receive(now, port, from, &mut buf[..n], &mut tx);
                        if tx.len() >= FLUSH_AT {
                            flush(
                                &sockets,
                                &mut tx,
                                &mut sent_packets,
                                &mut sent_bytes,
                                &mut send_errors,
                            );
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // ICMP errors surface here (ECONNREFUSED); the next read goes on.
                    Err(_) => continue,
                }
            }
        }
        if wake {
            loop {
                let cmd = match commands.try_recv() {
                    Ok(cmd) => cmd,
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        tracing::info!(shard = spec.index, "control plane gone; shard stopping");
                        return;
                    }
                };
                let mut binder = Binder {
                    sockets: &mut sockets,
                    spec: &spec,
                    poll: &poll,
                };
                if handle_command(&mut core, now, cmd, &mut binder) == AfterCommand::Stop {
                    tracing::info!(shard = spec.index, "shard stopping");
                    return;
                }
            }
        }
        if core.poll_timeout().is_some_and(|t| now >= t) {
            core.handle_timeout(now, &mut tx);
        }
        flush(
            &sockets,
            &mut tx,
            &mut sent_packets,
            &mut sent_bytes,
            &mut send_errors,
        );
        while let Some(port) = core.poll_released_port() {
            sockets.release(port, &poll);
        }
        while let Some(ev) = core.poll_event() {
            let _ = events_out.send(ev);
        }
        stats.publish(
            &core,
            &SendTotals {
                packets: sent_packets,
                bytes: sent_bytes,
                errors: send_errors,
            },
        );
    }
}

struct Binder<'a> {
    sockets: &'a mut Sockets,
    spec: &'a ShardSpec,
    poll: &'a Poll,
}

impl PortBinder for Binder<'_> {
    fn bind(&mut self) -> Result<u16, MediaError> {
        self.sockets.bind(self.spec, self.poll)
    }

    fn release(&mut self, port: u16) {
        self.sockets.release(port, self.poll);
    }
}

fn flush(
    sockets: &Sockets,
    tx: &mut TxQueue,
    sent_packets: &mut u64,
    sent_bytes: &mut u64,
    send_errors: &mut u64,
) {
    for (t, data) in tx.iter() {
        let Some(sock) = sockets.by_port.get(&t.from_port) else {
            continue;
        };
        match sock.send_to(data, t.to) {
            Ok(n) => {
                *sent_packets += 1;
                *sent_bytes += n as u64;
            }
            Err(e) => {
                *send_errors += 1;
                // Rate-limited: the first error and then one in every 1000.
                if *send_errors % 1000 == 1 {
                    tracing::warn!(error = %e, to = %t.to, errors = *send_errors, "send failed");
                }
            }
        }
    }
    tx.clear();
}
