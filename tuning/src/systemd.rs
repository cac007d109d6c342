//! The systemd notification protocol (`sd_notify(3)`), for a `Type=notify` unit.
//!
//! systemd passes a datagram socket in `$NOTIFY_SOCKET` (a path, or an abstract
//! name starting with `@`); the service sends `READY=1` once it serves,
//! `WATCHDOG=1` at least every `$WATCHDOG_USEC` microseconds (systemd kills and
//! restarts it otherwise), and `STOPPING=1` when it begins to shut down. Plain
//! std sockets: no libsystemd.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// `READY=1`: the service is up (listeners bound, shards running).
pub const READY: &str = "READY=1";
/// `WATCHDOG=1`: the service is alive.
pub const WATCHDOG: &str = "WATCHDOG=1";
/// `STOPPING=1`: the service is shutting down.
pub const STOPPING: &str = "STOPPING=1";

/// Sends `state` to `$NOTIFY_SOCKET`. Returns `Ok(false)` when the variable is
/// not set (not started by systemd, or not `Type=notify`).
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => {
            let path = path.into_string().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is not UTF-8")
            })?;
            notify_to(&path, state).map(|()| true)
        }
        None => Ok(false),
    }
}

/// Sends `state` to the notification socket `socket` (a path, or `@name` for
/// an abstract socket).
pub fn notify_to(socket: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = socket.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract sockets need Linux",
            ));
        }
    }
    sock.send_to(state.as_bytes(), socket)?;
    Ok(())
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, as sd_notify(3)
/// recommends, or `None` when no watchdog is asked for (or it is meant for
/// another process, `$WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] from explicit values (for tests).
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(my_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("rb-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).expect("bind");
        let p = path.to_str().expect("utf-8 path");
        notify_to(p, READY).expect("send ready");
        notify_to(p, WATCHDOG).expect("send watchdog");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringbridge-test-{}", std::process::id());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind");
        notify_to(&format!("@{name}"), STOPPING).expect("send");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn missing_socket_is_an_error_not_a_panic() {
        assert!(notify_to("/nonexistent/ringbridge.sock", READY).is_err());
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        assert_eq!(
            watchdog_interval_from(Some("20000000"), None, 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            watchdog_interval_from(Some("20000000"), Some("7"), 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(watchdog_interval_from(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
    }
}
