//! Serves the API on its listener, plain TCP or TLS, with hyper itself
//! rather than `axum::serve`, which offers no connection timeouts: a slow or
//! silent client could otherwise hold a connection for ever.
//!
//! Each connection runs in a task of its own, with a watchdog that closes it
//! when the client stalls between requests: no complete request head within
//! `limits.header_read_timeout_ms` (from the connection's opening, or from
//! the first byte of a kept-alive connection's next request), or no request
//! at all within `limits.idle_timeout_ms` after the last one ended. Bodies
//! are bounded by `api::edge` (408). The watchdog never ends a connection
//! with a request in flight; stopping the gateway lets those finish.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use crate::config::Limits;
use crate::tls::{PeerCertificate, TlsListener};

/// Serves `app` on `listener` (over TLS with `tls`) until `stop` turns
/// true, then lets the requests in flight finish.
pub fn spawn(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    app: Router,
    limits: &Limits,
    stop: watch::Receiver<bool>,
) -> io::Result<JoinHandle<io::Result<()>>> {
    let timeouts = ConnectionTimeouts::from(limits);
    Ok(match tls {
        None => tokio::spawn(serve(listener, app, timeouts, stop)),
        Some(config) => {
            let listener = TlsListener::new(listener, config)?;
            tokio::spawn(serve(listener, app, timeouts, stop))
        }
    })
}

/// How long a connection may go without a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

impl From<&Limits> for ConnectionTimeouts {
    fn from(limits: &Limits) -> Self {
        Self {
            header_read: Duration::from_millis(limits.header_read_timeout_ms),
            idle: Duration::from_millis(limits.idle_timeout_ms),
        }
    }
}

async fn serve<L>(
    mut listener: L,
    app: Router,
    timeouts: ConnectionTimeouts,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()>
where
    L: Listener,
    L::Io: PeerIdentity,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer starts when the previous response ends, so
    // it would also close kept-alive connections after the header timeout,
    // and it does not run while the protocol is still being sniffed or over
    // HTTP/2. The watchdog times both heads and idleness instead.
    builder.http1().keep_alive(true).header_read_timeout(None);
    let graceful = GracefulShutdown::new();
    loop {
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            _ = stop.wait_for(|stopping| *stopping) => break,
        };
        let peer = ConnectInfo(io.peer_certificate());
        let activity = Activity::new(timeouts);
        let watched = TokioIo::new(Watched {
            io,
            activity: activity.clone(),
        });
        let app = app.clone();
        let on_request = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = on_request.request_started();
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(peer.clone());
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| in_flight.held_by(body)))
            }
        });
        let connection = graceful.watch(builder.serve_connection(watched, service).into_owned());
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                stall = activity.stalled() => {
                    tracing::debug!(?stall, "closing a connection that stalled");
                }
            }
        });
    }
    // No new connections; the open ones finish what is in flight.
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The client certificate a connection presented, if any: requests carry it
/// as axum's `ConnectInfo`, which `auth.rs` reads.
trait PeerIdentity {
    fn peer_certificate(&self) -> PeerCertificate;
}

impl PeerIdentity for TcpStream {
    fn peer_certificate(&self) -> PeerCertificate {
        PeerCertificate::default()
    }
}

impl PeerIdentity for TlsStream<TcpStream> {
    fn peer_certificate(&self) -> PeerCertificate {
        PeerCertificate::of(self)
    }
}

/// Where a connection is between its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is due: the connection opened, or bytes of the next
    /// request arrived, at `since`.
    Head { since: Instant },
    /// The last request ended at `since` and nothing has arrived since.
    Idle { since: Instant },
    /// Requests are being served (several at once over HTTP/2).
    Busy { requests: usize },
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    NoHeadInTime,
    IdleTooLong,
}

/// One connection's phase, shared by its IO, its requests and its watchdog.
#[derive(Clone)]
struct Activity {
    phase: Arc<watch::Sender<Phase>>,
    timeouts: ConnectionTimeouts,
}

impl Activity {
    fn new(timeouts: ConnectionTimeouts) -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Head {
                since: Instant::now(),
            })),
            timeouts,
        }
    }

    fn bytes_arrived(&self) {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Idle { .. } => {
                *phase = Phase::Head {
                    since: Instant::now(),
                };
                true
            }
            Phase::Head { .. } | Phase::Busy { .. } => false,
        });
    }

    /// Bytes of a response went out. hyper ends a request once it has
    /// taken the last frame of the body, which may still be on its way to
    /// a slow reader: the idle clock runs from the last byte sent, so
    /// such a response is not cut off while it still moves.
    fn bytes_sent(&self) {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Idle { since } => {
                *since = Instant::now();
                true
            }
            Phase::Head { .. } | Phase::Busy { .. } => false,
        });
    }

    fn request_started(&self) -> InFlight {
        self.phase.send_modify(|phase| {
            let requests = match phase {
                Phase::Busy { requests } => *requests + 1,
                Phase::Head { .. } | Phase::Idle { .. } => 1,
            };
            *phase = Phase::Busy { requests };
        });
        InFlight(self.clone())
    }

    fn request_ended(&self) {
        self.phase.send_modify(|phase| {
            *phase = match phase {
                Phase::Busy { requests } if *requests > 1 => Phase::Busy {
                    requests: *requests - 1,
                },
                _ => Phase::Idle {
                    since: Instant::now(),
                },
            }
        });
    }

    /// Resolves when the connection has gone too long without a request.
    async fn stalled(&self) -> Stall {
        let mut phase = self.phase.subscribe();
        loop {
            let now = *phase.borrow_and_update();
            let (deadline, stall) = match now {
                Phase::Head { since } => (since + self.timeouts.header_read, Stall::NoHeadInTime),
                Phase::Idle { since } => (since + self.timeouts.idle, Stall::IdleTooLong),
                Phase::Busy { .. } => {
                    // `self` holds the sender, so this cannot fail.
                    let _ = phase.changed().await;
                    continue;
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    // A request that began just now wins over the deadline.
                    if !phase.has_changed().unwrap_or(true) {
                        return stall;
                    }
                }
                _ = phase.changed() => {}
            }
        }
    }
}

/// A request being served: it ends when its response body has been sent
/// or dropped.
struct InFlight(Activity);

impl InFlight {
    /// `body`, holding the request in flight until it is dropped.
    fn held_by(self, body: Body) -> Body {
        Body::new(body.map_frame(move |frame| {
            let _in_flight = &self;
            frame
        }))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A connection's IO that tells its activity when bytes arrive or leave.
struct Watched<IO> {
    io: IO,
    activity: Activity,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.bytes_sent();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.bytes_sent();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: ConnectionTimeouts = ConnectionTimeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    /// How long `stalled` takes to resolve, in paused time, while `during`
    /// runs beside it.
    async fn stalls_after(
        activity: &Activity,
        during: impl Future<Output = ()>,
    ) -> (Stall, Duration) {
        let start = Instant::now();
        let (stall, ()) = tokio::join!(activity.stalled(), during);
        (stall, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
        let activity = Activity::new(TIMEOUTS);
        let (stall, after) = stalls_after(&activity, async {}).await;
        assert_eq!(stall, Stall::NoHeadInTime);
        assert_eq!(after, TIMEOUTS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_may_idle_longer_than_the_header_timeout() {
        let activity = Activity::new(TIMEOUTS);
        drop(activity.request_started());
        let (stall, after) = stalls_after(&activity, async {}).await;
        assert_eq!(stall, Stall::IdleTooLong);
        assert_eq!(after, TIMEOUTS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_the_next_request_starts_the_header_timer() {
        let activity = Activity::new(TIMEOUTS);
        drop(activity.request_started());
        let (stall, after) = stalls_after(&activity, async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            activity.bytes_arrived();
            // Later bytes of the same head do not restart it.
            tokio::time::sleep(Duration::from_secs(5)).await;
            activity.bytes_arrived();
        })
        .await;
        assert_eq!(stall, Stall::NoHeadInTime);
        assert_eq!(after, Duration::from_secs(5) + TIMEOUTS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_cut_off() {
        let activity = Activity::new(TIMEOUTS);
        let (stall, after) = stalls_after(&activity, async {
            let first = activity.request_started();
            let second = activity.request_started();
            tokio::time::sleep(Duration::from_secs(300)).await;
            drop(first);
            tokio::time::sleep(Duration::from_secs(300)).await;
            drop(second);
        })
        .await;
        assert_eq!(stall, Stall::IdleTooLong);
        assert_eq!(after, Duration::from_secs(600) + TIMEOUTS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_clock_runs_from_the_last_byte_of_a_response_sent() {
        let activity = Activity::new(TIMEOUTS);
        drop(activity.request_started());
        tokio::time::advance(Duration::from_secs(50)).await;
        // hyper took the last frame long ago; its bytes are still leaving.
        activity.bytes_sent();
        let sent = Instant::now();
        assert_eq!(activity.stalled().await, Stall::IdleTooLong);
        assert_eq!(Instant::now() - sent, TIMEOUTS.idle);
    }
}
