//! The HTTP API: the management gateway's published API (the paths,
//! parameters and JSON of `gateway-3.0.0.json`, so its clients work
//! unchanged) plus mgsd's own under `/mgsd/v1`. It calls the same
//! registry API, with the same typed views, as the control socket.
//!
//! `serve` accepts connections and decides each client's class, `tls`
//! sets up HTTPS with client certificates, `frame` numbers, checks,
//! times, counts and answers every request, `sp` and `update` are the
//! reference's paths, `ext` is mgsd's own and `control` the socket's
//! protocol over HTTP (`mgsctl --http`), `openapi` the document.

mod config;
mod console;
mod control;
mod error;
mod ext;
mod frame;
pub mod mgs;
pub mod openapi;
mod recovery;
mod serve;
mod sp;
mod tls;
mod update;
mod upload;

pub use config::{HttpAccess, HttpConfig, ListenerConfig, SpType, TlsConfig};
pub use error::{ApiError, Error};
pub use serve::Caller;

use crate::api::Class;
use actors::store::AuditEntry;
use actors::Gateway;
use axum::routing::{get, post};
use axum::Router;
use mgs::SpIdentifier;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tracing::info;

/// The API version of the reference document these paths follow.
pub const API_VERSION: &str = "3.0.0";

/// Why the HTTP API could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http.listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("http.listener {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: tls::TlsError,
    },
}

/// Where each SP sits: `[[sp]] type` and `slot`, both ways.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    by_place: BTreeMap<(SpType, u16), String>,
    by_name: BTreeMap<String, SpIdentifier>,
}

impl Locations {
    pub fn of(sps: &[crate::config::SpConfig]) -> Self {
        let mut l = Self::default();
        for sp in sps {
            if let (Some(sp_type), Some(slot)) = (sp.sp_type, sp.slot) {
                l.by_place.insert((sp_type, slot), sp.name.clone());
                l.by_name
                    .insert(sp.name.clone(), SpIdentifier { sp_type, slot });
            }
        }
        l
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct Api(Arc<Inner>);

struct Inner {
    gw: Gateway,
    /// The socket's server, for `/mgsd/v1/control`.
    control: crate::control::ControlServer,
    locations: RwLock<Locations>,
    config: Arc<HttpConfig>,
    /// Uploads are written here (unlinked files) before intake reads them.
    upload_dir: PathBuf,
    /// When each (client address, command and reason) refusal was last
    /// audited: each is audited once a minute, counted always.
    refusals_audited: Mutex<BTreeMap<(std::net::IpAddr, String), Instant>>,
}

/// A running API: its listeners' addresses.
pub struct HttpServer {
    pub addrs: Vec<SocketAddr>,
    api: Api,
    /// The accept loops: they end with the server.
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

impl HttpServer {
    /// Re-read SP places after a configuration reload.
    pub fn set_locations(&self, locations: Locations) {
        *self
            .api
            .0
            .locations
            .write()
            .unwrap_or_else(|e| e.into_inner()) = locations;
    }
}

impl Api {
    fn gw(&self) -> &Gateway {
        &self.0.gw
    }

    /// The SP name at `{type}/{slot}`.
    fn sp_name(&self, sp_type: SpType, slot: u16) -> Result<String, ApiError> {
        let l = self.0.locations.read().unwrap_or_else(|e| e.into_inner());
        l.by_place.get(&(sp_type, slot)).cloned().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "UnknownSp",
                format!(
                    "no SP at {sp_type}/{slot} (see [[sp]] type and slot in the configuration)"
                ),
            )
        })
    }

    fn identifiers(&self) -> Vec<SpIdentifier> {
        let l = self.0.locations.read().unwrap_or_else(|e| e.into_inner());
        l.by_place
            .keys()
            .map(|&(sp_type, slot)| SpIdentifier { sp_type, slot })
            .collect()
    }

    fn identifier(&self, name: &str) -> Option<SpIdentifier> {
        let l = self.0.locations.read().unwrap_or_else(|e| e.into_inner());
        l.by_name.get(name).copied()
    }

    /// Run an operate call for `caller`: refused (403, audited) for a
    /// reader; otherwise carried out in a task of its own, so a client
    /// that goes away cancels nothing, and audited with its outcome.
    async fn operate<T, F>(&self, caller: &Caller, what: Audited, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let entry = what.entry(caller);
        if caller.class != Ok(Class::Operate) {
            let message = format!(
                "permission denied: {} may not {} (reading only; see [http.access] and \
                 trusted_network)",
                caller.who(),
                what.command
            );
            let e = ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "PermissionDenied",
                message,
            );
            self.refused(caller, entry, &e);
            return Err(e);
        }
        let outcome = tokio::spawn(work).await.unwrap_or_else(|_| {
            Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "Internal",
                "the request's task ended unexpectedly",
            ))
        });
        self.audit(entry, outcome.as_ref().err());
        outcome
    }

    /// Audit a refusal (once a minute per client address and reason).
    fn refused(&self, caller: &Caller, entry: AuditEntry, e: &ApiError) {
        metrics::counter!("mgsd_http_refusals_total", "reason" => "permission_denied").increment(1);
        // Per client address, command and why (no certificate, an
        // untrusted one, a reader's), so each kind is audited.
        let why = match &caller.class {
            Err(why) => why.clone(),
            Ok(_) => caller.subject.clone().unwrap_or_default(),
        };
        let key = (caller.addr.ip(), format!("{} {why}", entry.command));
        let now = Instant::now();
        let due = {
            let mut audited = self
                .0
                .refusals_audited
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if audited.len() > 4096 {
                audited.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
            }
            match audited.get(&key) {
                Some(at) if now.duration_since(*at) < Duration::from_secs(60) => false,
                _ => {
                    audited.insert(key, now);
                    true
                }
            }
        };
        if due {
            // A count marks a refusal: the store keeps those apart, so they
            // never push out operate rows.
            let entry = AuditEntry {
                count: Some(1),
                ..entry
            };
            self.audit(entry, Some(e));
        }
    }

    fn audit(&self, mut entry: AuditEntry, error: Option<&ApiError>) {
        entry.time_unix_ms = actors::types::unix_ms();
        match error {
            None => entry.result = "ok".into(),
            Some(e) => {
                // Spelt as the socket's rows are (`permission_denied`).
                entry.result = snake(&e.code);
                entry.message = Some(e.message.clone());
            }
        }
        info!(
            target: "audit",
            peer = entry.peer.as_deref(),
            command = %entry.command,
            sp = entry.sp.as_deref(),
            component = entry.component.as_deref(),
            update_id = entry.update_id.map(|u| u.to_string()),
            result = %entry.result,
            message = entry.message.as_deref(),
            "HTTP command"
        );
        self.0.gw.registry.audit(entry);
    }
}

/// `PermissionDenied` → `permission_denied`.
fn snake(code: &str) -> String {
    let mut out = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// What an operate call is about, for its audit row.
pub struct Audited {
    pub command: &'static str,
    pub sp: Option<String>,
    pub component: Option<String>,
    pub update_id: Option<uuid::Uuid>,
}

impl Audited {
    fn entry(&self, caller: &Caller) -> AuditEntry {
        AuditEntry {
            // No local user: the kernel's "no uid" value; `peer` says who.
            uid: u32::MAX,
            gid: u32::MAX,
            pid: None,
            command: self.command.into(),
            sp: self.sp.clone(),
            component: self.component.clone(),
            update_id: self.update_id,
            peer: Some(caller.who()),
            ..AuditEntry::default()
        }
    }
}

/// The router of every path, with `frame`'s layers.
pub fn router(api: Api) -> Router {
    let mgs = Router::new()
        .route("/local/all-sp-ids", get(sp::all_sp_ids))
        .route("/local/switch-id", get(sp::switch_id))
        .route("/sp/{type}/{slot}", get(sp::sp_get))
        .route(
            "/sp/{type}/{slot}/power-state",
            get(sp::power_get).post(sp::power_set),
        )
        .route(
            "/sp/{type}/{slot}/startup-options",
            get(sp::startup_get).post(sp::startup_set),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/active-slot",
            get(sp::active_slot_get).post(sp::active_slot_set),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/caboose",
            get(sp::caboose),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/hash/{firmware_slot}",
            get(sp::hash_get).post(sp::hash_start),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/reset",
            post(sp::reset),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/rot-boot-info",
            get(sp::rot_boot_info),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/update",
            post(update::start),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/update-abort",
            post(update::abort),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/update-status",
            get(update::status),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/serial-console/attach",
            get(console::attach),
        )
        .route(
            "/sp/{type}/{slot}/component/{component}/serial-console/detach",
            post(console::detach),
        )
        .route("/recovery/host-phase2", post(recovery::upload))
        .route(
            "/sp/{type}/{slot}/host-phase2-progress",
            get(recovery::progress_get).delete(recovery::progress_delete),
        )
        .route(
            "/sp/{type}/{slot}/ipcc/installinator-image-id",
            axum::routing::put(recovery::installinator_set).delete(recovery::installinator_delete),
        );
    let mgs = frame::not_yet(mgs);
    mgs.merge(ext::routes())
        .fallback(frame::no_such_path)
        .method_not_allowed_fallback(frame::wrong_method)
        .route_layer(axum::middleware::from_fn(frame::note_path))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            frame::frame,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            api.0.config.max_json_body_bytes,
        ))
        .with_state(api)
}

/// The listeners of `[http]`, bound (and their TLS set up) but not yet
/// serving: a configuration that cannot be served stops the daemon
/// before it starts.
pub struct Bound {
    http: Arc<HttpConfig>,
    listeners: Vec<(
        ListenerConfig,
        Option<tls::TlsListener>,
        tokio::net::TcpListener,
    )>,
}

impl Bound {
    pub fn bind(config: &HttpConfig) -> Result<Self, HttpError> {
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let tls = l
                .tls
                .as_ref()
                .map(tls::TlsListener::new)
                .transpose()
                .map_err(|source| HttpError::Tls {
                    addr: l.addr,
                    source,
                })?;
            let socket = serve::bind(l.addr).map_err(|source| HttpError::Bind {
                addr: l.addr,
                source,
            })?;
            listeners.push((l.clone(), tls, socket));
        }
        Ok(Self {
            http: Arc::new(config.clone()),
            listeners,
        })
    }

    /// Where the listeners listen.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .map(|(l, _, socket)| socket.local_addr().unwrap_or(l.addr))
            .collect()
    }

    /// Serve the API (none configured: `None`).
    pub fn serve(
        self,
        gw: Gateway,
        control: crate::control::ControlServer,
        config: &crate::config::Config,
    ) -> Option<HttpServer> {
        if self.listeners.is_empty() {
            return None;
        }
        let addrs = self.addrs();
        let upload_dir = if config.state.dir.as_os_str().is_empty() {
            std::env::temp_dir()
        } else {
            config.state.dir.clone()
        };
        let http = self.http;
        let api = Api(Arc::new(Inner {
            gw,
            control,
            locations: RwLock::new(Locations::of(&config.sps)),
            config: http.clone(),
            upload_dir,
            refusals_audited: Mutex::new(BTreeMap::new()),
        }));
        let places = Arc::new(serve::Places::new(&http));
        let router = router(api.clone());
        let mut tasks = Vec::new();
        for ((l, tls, socket), addr) in self.listeners.into_iter().zip(&addrs) {
            info!(%addr, tls = tls.is_some(), trusted_network = l.trusted_network, "HTTP API listening");
            let listener = Arc::new(serve::Listener {
                config: l,
                tls,
                router: router.clone(),
                places: places.clone(),
                http: http.clone(),
            });
            tasks.push(tokio::spawn(listener.serve(socket)));
        }
        Some(HttpServer {
            addrs,
            api,
            listeners: tasks,
        })
    }
}
