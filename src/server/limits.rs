//! What the listener and the stream registry take from the operating system:
//! the open-file limit, and the kernel's write timeout.

use std::net::TcpListener;
use std::time::Duration;

/// Open files kept for what is not a stream (database and Redis connections,
/// requests in flight, files): a tenth of the limit, and at least this many.
const MIN_FILE_RESERVE: u64 = 64;

/// The most streams an instance holds: `configured`, or when 0, the
/// open-file limit (each stream holds one socket) less a reserve.
pub(super) fn stream_capacity(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let reserve = (soft / 10).max(MIN_FILE_RESERVE);
    usize::try_from(soft.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX)
}

/// Makes the kernel drop a connection whose peer takes no bytes for
/// `timeout` (`TCP_USER_TIMEOUT`, inherited by every accepted socket): the
/// connection of a stream whose client stopped reading is closed, and with
/// it the stream and its subscription, even though the server never gets
/// to write again.
pub(super) fn set_write_timeout(listener: &TcpListener, timeout: Duration) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket2::SockRef::from(listener).set_tcp_user_timeout(Some(timeout))?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (listener, timeout);
        tracing::warn!("SSE_TICKET_WRITE_TIMEOUT is only enforced on Linux");
    }
    Ok(())
}
