//! The HTTP suites' client (ureq, run off the test's actix thread so an
//! in-process daemon keeps serving), TLS fixtures, and checks of answers
//! against the reference document's schemas with a JSON Schema validator.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The reference API document.
pub fn reference() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/mgs-api/gateway-3.0.0.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

/// A test TLS file (`daemon/tests/fixtures/tls/`).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls")).join(name)
}

/// An answer: status, body as JSON (`Null` when empty or not JSON), and
/// the raw body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
}

/// A client of one daemon's HTTP API.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    version: Option<&'static str>,
}

impl Client {
    /// Plain HTTP to `addr`, sending `api-version: 3.0.0` as the
    /// reference's clients do.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with(format!("http://{addr}"), None)
    }

    /// HTTPS to `addr` trusting the fixture CA, with the client
    /// certificate `cert` (`operator`, `reader`, `stranger`) if given.
    pub fn tls(addr: SocketAddr, cert: Option<&str>) -> Self {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let read = |name: &str| std::fs::read(fixture(name)).unwrap();
        let ca = Certificate::from_pem(&read("ca.pem")).unwrap();
        let client = cert.map(|c| {
            let chain = Certificate::from_pem(&read(&format!("{c}.pem"))).unwrap();
            let key = PrivateKey::from_pem(&read(&format!("{c}-key.pem"))).unwrap();
            ClientCert::new_with_certs(&[chain], key)
        });
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
            .client_cert(client)
            .build();
        let port = addr.port();
        Self::with(format!("https://localhost:{port}"), Some(tls))
    }

    fn with(base: String, tls: Option<ureq::tls::TlsConfig>) -> Self {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)));
        if let Some(tls) = tls {
            config = config.tls_config(tls);
        }
        Self {
            base,
            agent: config.build().into(),
            version: Some("3.0.0"),
        }
    }

    /// Send `api-version: v` instead (`None`: no header).
    pub fn version(mut self, v: Option<&'static str>) -> Self {
        self.version = v;
        self
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None, None).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Answer {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.send("POST", path, Some(bytes), Some("application/json"))
            .await
    }

    pub async fn post_empty(&self, path: &str) -> Answer {
        self.send("POST", path, None, None).await
    }

    pub async fn post_bytes(&self, path: &str, body: Vec<u8>, content_type: &str) -> Answer {
        self.send("POST", path, Some(body), Some(content_type))
            .await
    }

    /// A request, or the transport's error as status 0 and its text.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Answer {
        let me = self.clone();
        let (method, path, content_type) = (
            method.to_string(),
            path.to_string(),
            content_type.map(String::from),
        );
        tokio::task::spawn_blocking(move || me.blocking(&method, &path, body, content_type))
            .await
            .unwrap()
    }

    fn blocking(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<String>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(v) = self.version {
            request = request.header("api-version", v);
        }
        if let Some(c) = content_type {
            request = request.header("content-type", c);
        }
        let result = match body {
            Some(b) => self.agent.run(request.body(b).unwrap()),
            None => self.agent.run(request.body(()).unwrap()),
        };
        match result {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                let json = serde_json::from_str(&text).unwrap_or(Value::Null);
                Answer { status, json, text }
            }
            Err(e) => Answer {
                status: 0,
                json: Value::Null,
                text: e.to_string(),
            },
        }
    }
}

/// The reference's schemas with OpenAPI 3.0's `nullable` rewritten as
/// JSON Schema says it, so a standard validator checks them.
fn json_schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "nullable")
                .map(|(k, v)| (k.clone(), json_schema(v)))
                .collect();
            if map.get("nullable") == Some(&Value::Bool(true)) {
                let inner = Value::Object(out);
                out = serde_json::Map::new();
                out.insert(
                    "anyOf".into(),
                    serde_json::json!([{ "type": "null" }, inner]),
                );
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// Check `answer` against the reference's response schema for `method`
/// `path` (a template, `/sp/{type}/{slot}`) and its status (or `4XX` /
/// `5XX`); panics naming every violation.
pub fn validate(method: &str, path: &str, answer: &Answer) {
    let op = &reference()["paths"][path][method];
    assert!(op.is_object(), "the reference has no {method} {path}");
    let responses = &op["responses"];
    let status = answer.status.to_string();
    let range = format!("{}XX", &status[..1]);
    let response = match (&responses[&status], &responses[&range]) {
        (r, _) if r.is_object() => r,
        (_, r) if r.is_object() => r,
        _ => panic!(
            "{method} {path}: the reference has no response {status}: {}",
            answer.text
        ),
    };
    let response = match response.get("$ref").and_then(Value::as_str) {
        Some(r) => &reference()["components"]["responses"][r.rsplit('/').next().unwrap()],
        None => response,
    };
    let Some(schema) = response.pointer("/content/application~1json/schema") else {
        assert!(
            answer.text.is_empty(),
            "{method} {path} {status}: the reference has no body here, got {}",
            answer.text
        );
        return;
    };
    let mut root = json_schema(schema);
    root["components"] = json_schema(&reference()["components"]);
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&answer.json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: the body does not validate against the reference: {errors:?}\n{}",
        answer.text
    );
}
