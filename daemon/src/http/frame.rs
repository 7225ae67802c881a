//! What every request goes through: a request id, the caller's class,
//! the `api-version` header, a time limit, its metrics, and error bodies
//! in the reference's `Error` shape.

use super::error::{ApiError, Error};
use super::{Api, Caller, API_VERSION};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The matched route, copied to the response for [`frame`]'s metrics.
#[derive(Clone)]
struct Route(String);

/// Runs inside routing (`route_layer`), where the matched path is known.
pub(super) async fn note_path(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let mut r = next.run(req).await;
    if let Some(p) = path {
        r.extensions_mut().insert(Route(p));
    }
    r
}

/// Requests not bounded by `request_timeout_ms`: actions (they run in
/// tasks of their own, are audited when done, and a reset may take its
/// whole budget), uploads and streams.
fn unbounded(method: &Method, path: &str) -> bool {
    method != Method::GET || path.ends_with("/stream")
}

pub(super) async fn frame(State(api): State<Api>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = req.method().clone();
    let caller = req.extensions().get::<Caller>().cloned();
    let expects_continue = req.headers().contains_key(axum::http::header::EXPECT);
    let (parts, body) = req.into_parts();
    let body = Arc::new(Mutex::new(Some(body)));
    let req = Request::from_parts(parts, Body::new(Shared(body.clone())));
    let answer = match check(&api, &req, caller.as_ref()) {
        Err(e) => e.into_response(),
        Ok(()) if unbounded(&method, req.uri().path()) => next.run(req).await,
        Ok(()) => {
            let limit = Duration::from_millis(api.0.config.request_timeout_ms);
            match tokio::time::timeout(limit, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "RequestTimeout",
                    format!("not answered within http.request_timeout_ms ({limit:?})"),
                )
                .into_response(),
            }
        }
    };
    let unread = body.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(unread) = unread.filter(|_| answer.status().as_u16() >= 400 && !expects_continue) {
        // Read what the client sends anyway (bounded), so it sees the
        // answer rather than a connection reset mid-upload.
        let idle = Duration::from_millis(api.0.config.upload_idle_timeout_ms);
        drain(unread, idle).await;
    }
    if answer.status().is_server_error() {
        if let Some(e) = answer.extensions().get::<ApiError>() {
            tracing::warn!(%request_id, %method, code = %e.code, message = %e.message, "HTTP request failed");
        }
    }
    let mut answer = with_body(answer, &request_id);
    let operation = answer
        .extensions()
        .get::<Route>()
        .map_or_else(|| "unmatched".to_string(), |r| format!("{method} {}", r.0));
    let status = answer.status().as_u16().to_string();
    metrics::counter!("mgsd_http_requests_total", "operation" => operation.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("mgsd_http_request_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        answer.headers_mut().insert("x-request-id", v);
    }
    answer
}

/// A request body the handler reads through, leaving what it did not
/// read for [`frame`] to drain.
struct Shared(Arc<Mutex<Option<Body>>>);

impl HttpBody for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let mut body = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match body.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

/// A refused request's body is read (and dropped) up to this much.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;

async fn drain(body: Body, idle: Duration) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while total <= DRAIN_BYTES {
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(chunk))) => total += chunk.len() as u64,
            _ => return,
        }
    }
}

/// Refuse a caller with no class, or a version we do not serve.
fn check(api: &Api, req: &Request, caller: Option<&Caller>) -> Result<(), ApiError> {
    let Some(caller) = caller else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            "request without a connection",
        ));
    };
    if let Err(why) = &caller.class {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "PermissionDenied",
            format!("permission denied: {why}"),
        );
        let what = super::Audited {
            command: "connect",
            sp: None,
            component: None,
            update_id: None,
        };
        api.refused(caller, what.entry(caller), &e);
        return Err(e);
    }
    // Without the header, a request is taken as the version served (the
    // reference refuses it; curl users need not spell it out).
    if let Some(v) = req.headers().get("api-version") {
        if v.as_bytes() != API_VERSION.as_bytes() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "UnsupportedApiVersion",
                format!(
                    "api-version {:?}: this server serves {API_VERSION} only",
                    String::from_utf8_lossy(v.as_bytes())
                ),
            ));
        }
    }
    Ok(())
}

/// Give an error response its JSON body, with the request id.
fn with_body(r: Response, request_id: &str) -> Response {
    let Some(e) = r.extensions().get::<ApiError>().cloned() else {
        return r;
    };
    let route = r.extensions().get::<Route>().cloned();
    let body = Error {
        error_code: e.code,
        message: e.message,
        request_id: request_id.to_string(),
    };
    let mut out = (e.status, axum::Json(body)).into_response();
    if let Some(route) = route {
        out.extensions_mut().insert(route);
    }
    out
}

/// Any other path: 404 in the `Error` shape.
pub(super) async fn no_such_path(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no such path: {} {}", req.method(), req.uri().path()),
    )
}

/// A known path with a method it does not take: 405 in the `Error` shape.
pub(super) async fn wrong_method(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("{} does not take {}", req.uri().path(), req.method()),
    )
}

/// The reference's paths mgsd does not serve yet, each with the area of
/// work that brings it.
pub const NOT_YET: &[(&str, &[&str], &str)] = &[
    ("/ignition", &["get"], "ignition"),
    ("/ignition/{type}/{slot}", &["get"], "ignition"),
    ("/ignition/{type}/{slot}/{command}", &["post"], "ignition"),
    ("/sp/{type}/{slot}/component", &["get"], "inventory"),
    (
        "/sp/{type}/{slot}/component/{component}",
        &["get"],
        "inventory",
    ),
    (
        "/sp/{type}/{slot}/component/{component}/cfpa",
        &["get"],
        "RoT CMPA/CFPA",
    ),
    (
        "/sp/{type}/{slot}/component/{component}/cmpa",
        &["get"],
        "RoT CMPA/CFPA",
    ),
    (
        "/sp/{type}/{slot}/component/{component}/clear-status",
        &["post"],
        "inventory",
    ),
    ("/sp/{type}/{slot}/ereports", &["post"], "ereports"),
    (
        "/sp/{type}/{slot}/sensor/{sensor_id}/value",
        &["get"],
        "sensors",
    ),
    ("/sp/{type}/{slot}/task-dump", &["get"], "task dumps"),
    (
        "/sp/{type}/{slot}/task-dump/{task_dump_index}",
        &["get"],
        "task dumps",
    ),
];

/// Route every [`NOT_YET`] path to a 501 naming its area.
pub(super) fn not_yet(mut router: Router<Api>) -> Router<Api> {
    for &(path, methods, area) in NOT_YET {
        let answer = move || async move {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                format!("mgsd does not serve this path yet ({area} is the next work)"),
            )
        };
        let mut route = axum::routing::MethodRouter::new();
        for m in methods {
            route = match *m {
                "get" => route.get(answer),
                "post" => route.post(answer),
                "put" => route.put(answer),
                _ => route.delete(answer),
            };
        }
        router = router.route(path, route);
    }
    router
}
