//! `[http]`: the HTTP API's listeners, who may do what on each, and its
//! limits. Off unless a `[[http.listener]]` is given.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the API listens (default none: the API is off).
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// The slot of the switch whose SP this scrimlet is wired to
    /// (`/local/switch-id`); unset, that path answers 503.
    pub switch_slot: Option<u16>,
    /// Client certificate subjects (their common names) and the class
    /// each gets on TLS listeners with `client_ca`.
    pub access: HttpAccess,
    /// Connections served at once (default 64). Past it a new connection
    /// waits for a place, up to `connection_wait_ms`.
    pub max_connections: usize,
    /// How long a connection past `max_connections` waits for a place
    /// before it is answered 503 (default 30000 ms).
    pub connection_wait_ms: u64,
    /// Connections that may wait at once (default 256); more are answered
    /// 503 at once.
    pub max_waiting: usize,
    /// Largest request head (request line and headers), bytes (default
    /// 16384, at least 8192).
    pub max_header_bytes: usize,
    /// The request head must arrive within this (default 10000 ms).
    pub header_timeout_ms: u64,
    /// Largest JSON request body, bytes (default 65536). Image uploads
    /// are bounded by their component's size instead.
    pub max_json_body_bytes: usize,
    /// A GET (other than a stream) is answered within this, or with 503
    /// (default 60000 ms). Actions are not bounded by it: they run to
    /// their end in tasks of their own and are audited then.
    pub request_timeout_ms: u64,
    /// An upload that sends nothing for this long is abandoned (default
    /// 30000 ms).
    pub upload_idle_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listeners: Vec::new(),
            switch_slot: None,
            access: HttpAccess::default(),
            max_connections: 64,
            connection_wait_ms: 30_000,
            max_waiting: 256,
            max_header_bytes: 16 * 1024,
            header_timeout_ms: 10_000,
            max_json_body_bytes: 64 * 1024,
            request_timeout_ms: 60_000,
            upload_idle_timeout_ms: 30_000,
        }
    }
}

/// One `[[http.listener]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `[::]:12225`, `127.0.0.1:0`...
    pub addr: SocketAddr,
    /// The management network is the boundary: every client that reaches
    /// this listener may operate (the reference gateway's model), unless
    /// `tls.client_ca` is given, when certificates decide. Without it, a
    /// plain listener must be on a loopback address (clients there may
    /// read), and a TLS one must check client certificates.
    #[serde(default)]
    pub trusted_network: bool,
    /// Serve HTTPS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[http.listener.tls]`: PEM files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// Its private key (PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates. With it, a client's
    /// certificate decides its class (`[http.access]`); a client without
    /// one, or with one no CA here signed, may do nothing.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `[http.access]`: client certificate common names (`CN`) by class.
/// Operating includes reading.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAccess {
    pub operate_subjects: Vec<String>,
    pub read_subjects: Vec<String>,
}

/// An SP's kind as the HTTP API names it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SpType {
    Sled,
    Power,
    Switch,
}

impl SpType {
    /// The type of a simulated SP.
    pub fn of(kind: sp_sim::SpKind) -> Self {
        match kind {
            sp_sim::SpKind::Sled => SpType::Sled,
            sp_sim::SpKind::Switch => SpType::Switch,
            sp_sim::SpKind::PowerShelf => SpType::Power,
        }
    }
}

impl std::fmt::Display for SpType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpType::Sled => "sled",
            SpType::Power => "power",
            SpType::Switch => "switch",
        })
    }
}

impl HttpConfig {
    /// Refuse settings the API cannot be served with, naming them.
    pub fn check(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("http.max_connections: must be at least 1".into());
        }
        if self.max_header_bytes < 8192 {
            return Err("http.max_header_bytes: must be at least 8192".into());
        }
        for (what, ms) in [
            ("connection_wait_ms", self.connection_wait_ms),
            ("header_timeout_ms", self.header_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("upload_idle_timeout_ms", self.upload_idle_timeout_ms),
        ] {
            if ms == 0 {
                return Err(format!("http.{what}: must be above 0"));
            }
        }
        for l in &self.listeners {
            l.check()?;
        }
        Ok(())
    }
}

impl ListenerConfig {
    fn check(&self) -> Result<(), String> {
        let addr = self.addr;
        match &self.tls {
            None if !self.trusted_network && !addr.ip().is_loopback() => Err(format!(
                "http.listener {addr}: plain HTTP on an address other hosts reach lets anyone \
                 on that network in; add [http.listener.tls] with client_ca, listen on \
                 loopback, or set trusted_network = true if the network is the boundary"
            )),
            Some(tls) if tls.client_ca.is_none() && !self.trusted_network => Err(format!(
                "http.listener {addr}: TLS without client_ca cannot tell clients apart; \
                 give client_ca (certificates map to [http.access]) or set \
                 trusted_network = true"
            )),
            _ => Ok(()),
        }
    }
}
