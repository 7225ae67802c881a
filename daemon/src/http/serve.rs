//! Listeners: accepting connections within `http.max_connections` (past
//! it a connection waits, bounded, for a place), TLS, deciding each
//! client's class once per connection, and serving HTTP/1.1 on it with
//! the head's size and time bounded.

use super::config::{HttpConfig, ListenerConfig};
use super::tls::TlsListener;
use crate::api::Class;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Who is on the other end of a connection, decided when it connected.
#[derive(Debug, Clone)]
pub struct Caller {
    pub addr: SocketAddr,
    /// `CN=...` of a verified client certificate.
    pub subject: Option<String>,
    /// What the caller may do, or why nothing.
    pub class: Result<Class, String>,
}

impl Caller {
    /// How the audit names the caller.
    pub fn who(&self) -> String {
        match &self.subject {
            Some(s) => format!("http {s} ({})", self.addr),
            None => format!("http {}", self.addr),
        }
    }
}

/// Places for connections, shared by every listener.
pub struct Places {
    free: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

impl Places {
    pub fn new(config: &HttpConfig) -> Self {
        Self {
            free: Arc::new(Semaphore::new(config.max_connections)),
            waiting: AtomicUsize::new(0),
            max_waiting: config.max_waiting,
            wait: Duration::from_millis(config.connection_wait_ms),
        }
    }

    /// A place, waiting for one if all are taken; `None` if none came
    /// in time or too many wait already.
    async fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(p) = self.free.clone().try_acquire_owned() {
            return Some(p);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        metrics::counter!("mgsd_http_connection_waits_total").increment(1);
        let got = tokio::time::timeout(self.wait, self.free.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        got.ok().and_then(Result::ok)
    }
}

/// What each connection of one listener is served with.
pub struct Listener {
    pub config: ListenerConfig,
    pub tls: Option<TlsListener>,
    pub router: Router,
    pub places: Arc<Places>,
    pub http: Arc<HttpConfig>,
}

impl Listener {
    /// Accept connections forever.
    pub async fn serve(self: Arc<Self>, socket: TcpListener) {
        loop {
            match socket.accept().await {
                Ok((stream, addr)) => {
                    let me = self.clone();
                    tokio::spawn(async move { me.connection(stream, addr).await });
                }
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(self: Arc<Self>, stream: TcpStream, addr: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let Some(_place) = self.places.take().await else {
            metrics::counter!("mgsd_http_refusals_total", "reason" => "busy").increment(1);
            debug!(%addr, "HTTP connection refused: no place in time");
            if self.tls.is_none() {
                busy(stream).await;
            }
            return;
        };
        let connections = metrics::gauge!("mgsd_http_connections");
        connections.increment(1.0);
        let head_timeout = Duration::from_millis(self.http.header_timeout_ms);
        match &self.tls {
            None => {
                let class = if self.config.trusted_network {
                    Ok(Class::Operate)
                } else {
                    // Only loopback listeners get here (config check):
                    // local clients may look; operating wants the socket.
                    Ok(Class::Read)
                };
                let caller = Caller {
                    addr,
                    subject: None,
                    class,
                };
                self.http1(stream, caller).await;
            }
            Some(tls) => {
                match tokio::time::timeout(head_timeout, tls.acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let (_, session) = stream.get_ref();
                        let (subject, class) = tls.identify(
                            session.peer_certificates(),
                            &self.http.access,
                            self.config.trusted_network,
                        );
                        let caller = Caller {
                            addr,
                            subject,
                            class,
                        };
                        self.http1(stream, caller).await;
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("mgsd_http_refusals_total", "reason" => "tls")
                            .increment(1);
                        debug!(%addr, error = %e, "TLS handshake failed");
                    }
                    Err(_) => debug!(%addr, "TLS handshake timed out"),
                }
            }
        }
        connections.decrement(1.0);
    }

    async fn http1<S>(&self, stream: S, caller: Caller)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(caller.clone());
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(self.http.header_timeout_ms))
            .max_buf_size(self.http.max_header_bytes)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            debug!(error = %e, "HTTP connection ended");
        }
    }
}

/// Answer a connection that found no place with a 503 and close it.
async fn busy(mut stream: TcpStream) {
    let body = serde_json::json!({
        "error_code": "Busy",
        "message": "mgsd serves too many HTTP connections (http.max_connections); try again",
        "request_id": "",
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Bind every listener: a bind that fails stops the daemon starting.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = std::net::TcpListener::bind(addr)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
}
