//! A blocking client of the control protocol (what `mgsctl` uses): over
//! the Unix socket, or over a remote daemon's HTTP API
//! (`/mgsd/v1/control`, [`Remote`]).

use crate::api::{Command, Response, PROTOCOL_VERSION};
use std::io::{BufRead, BufReader, Write};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// One connection to the daemon.
pub struct Client(Transport);

enum Transport {
    Unix {
        reader: BufReader<UnixStream>,
        writer: UnixStream,
    },
    Http {
        agent: ureq::Agent,
        url: String,
        /// The answer being read: one line, or a watch's stream.
        answer: Option<BufReader<Box<dyn std::io::Read + Send>>>,
    },
}

/// A remote daemon's HTTP API, and how to trust it and be known to it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `https://scrimlet-1:12225` (`http://` only on a trusted network).
    pub url: String,
    /// PEM CA certificates to trust the server by (default: the public
    /// roots).
    pub cacert: Option<std::path::PathBuf>,
    /// PEM client certificate and its key.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

impl Client {
    /// Connect to the socket at `path`.
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path)?;
        Ok(Self(Transport::Unix {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        }))
    }

    /// A client of `remote`'s HTTP API.
    pub fn http(remote: &Remote) -> std::io::Result<Self> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        let bad = |p: &std::path::Path, e: ureq::Error| {
            std::io::Error::other(format!("{}: {e}", p.display()))
        };
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &remote.cacert {
            let pem = read(ca)?;
            let roots = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            tls = tls.root_certs(RootCerts::Specific(std::sync::Arc::new(roots)));
        }
        match (&remote.cert, &remote.key) {
            (Some(cert), Some(key)) => {
                let chain = Certificate::from_pem(&read(cert)?).map_err(|e| bad(cert, e))?;
                let key = PrivateKey::from_pem(&read(key)?).map_err(|e| bad(key, e))?;
                tls = tls.client_cert(Some(ClientCert::new_with_certs(&[chain], key)));
            }
            (None, None) => {}
            _ => {
                return Err(std::io::Error::other(
                    "give both --cert and --key, or neither",
                ))
            }
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Self(Transport::Http {
            agent,
            url: format!("{}/mgsd/v1/control", remote.url.trim_end_matches('/')),
            answer: None,
        }))
    }

    /// Send `command` and read the first response line.
    pub fn request(&mut self, command: &Command) -> std::io::Result<Response> {
        self.request_with(command, None)
    }

    /// Send `command` with the descriptor `fd` (the image of an
    /// `update_start`) and read the first response line.
    pub fn request_with(
        &mut self,
        command: &Command,
        fd: Option<BorrowedFd<'_>>,
    ) -> std::io::Result<Response> {
        self.request_with_fds(command, fd.as_slice())
    }

    /// Send `command` with the descriptors `fds` (the images of a
    /// `rollout_start`, in index order) and read the first response line.
    pub fn request_with_fds(
        &mut self,
        command: &Command,
        fds: &[BorrowedFd<'_>],
    ) -> std::io::Result<Response> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let mut value = serde_json::to_value(command)?;
        value["v"] = PROTOCOL_VERSION.into();
        let mut line = serde_json::to_vec(&value)?;
        line.push(b'\n');
        let (reader, writer) = match &mut self.0 {
            Transport::Unix { reader, writer } => (reader, writer),
            Transport::Http { agent, url, answer } => {
                *answer = Some(post(agent, url, line, fds)?);
                return self.next_response()?.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "empty answer")
                });
            }
        };
        let _ = reader;
        let mut sent = 0;
        if !fds.is_empty() {
            // The descriptors travel with the line's first bytes.
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(16))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(std::io::Error::other(
                    "at most 16 descriptors go with one request",
                ));
            }
            sent = rustix::net::sendmsg(
                &*writer,
                &[std::io::IoSlice::new(&line)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?;
        }
        writer.write_all(&line[sent..])?;
        self.next_response()?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "daemon closed the connection",
            )
        })
    }

    /// The socket itself, for a stream that goes both ways (a console);
    /// `None` over HTTP.
    pub fn into_unix(self) -> Option<(BufReader<UnixStream>, UnixStream)> {
        match self.0 {
            Transport::Unix { reader, writer } => Some((reader, writer)),
            Transport::Http { .. } => None,
        }
    }

    /// The next response line (streams such as `watch`), `None` at EOF.
    pub fn next_response(&mut self) -> std::io::Result<Option<Response>> {
        let mut line = String::new();
        let read = match &mut self.0 {
            Transport::Unix { reader, .. } => reader.read_line(&mut line)?,
            Transport::Http { answer, .. } => match answer {
                Some(a) => a.read_line(&mut line)?,
                None => 0,
            },
        };
        if read == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(std::io::Error::other)
    }
}

/// POST one request line and the images of `fds` (streamed, not held in
/// memory) to a daemon's `/mgsd/v1/control`; its answer's lines.
fn post(
    agent: &ureq::Agent,
    url: &str,
    line: Vec<u8>,
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<BufReader<Box<dyn std::io::Read + Send>>> {
    use std::io::Read;
    let mut lengths = Vec::new();
    let mut body: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(line));
    for fd in fds {
        let file = std::fs::File::from(fd.try_clone_to_owned()?);
        let len = file.metadata()?.len();
        lengths.push(len.to_string());
        body = Box::new(body.chain(file.take(len)));
    }
    let url = match lengths.is_empty() {
        true => url.to_string(),
        false => format!("{url}?images={}", lengths.join(",")),
    };
    let response = agent
        .post(&url)
        .header("content-type", "application/octet-stream")
        .header("api-version", "3.0.0")
        .send(ureq::SendBody::from_owned_reader(body))
        .map_err(|e| std::io::Error::other(format!("{url}: {e}")))?;
    let status = response.status();
    let reader = response
        .into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader();
    if status.is_success() {
        return Ok(BufReader::new(Box::new(reader)));
    }
    // An HTTP-level refusal (no class, busy, ...): its Error body as the
    // protocol's error line.
    let mut text = String::new();
    let mut reader = reader;
    let _ = (&mut reader).take(64 * 1024).read_to_string(&mut text);
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let code = match body["error_code"].as_str() {
        Some("PermissionDenied") => crate::api::ErrorCode::PermissionDenied,
        Some("Busy") => crate::api::ErrorCode::Busy,
        Some("RequestTooLarge") => crate::api::ErrorCode::RequestTooLarge,
        Some("UnsupportedApiVersion") => crate::api::ErrorCode::UnsupportedVersion,
        _ if status.is_client_error() => crate::api::ErrorCode::BadRequest,
        _ => crate::api::ErrorCode::Internal,
    };
    let message = body["message"]
        .as_str()
        .map_or_else(|| format!("{url}: HTTP {status}"), String::from);
    let mut line = serde_json::to_vec(&Response::error(None, code, message))?;
    line.push(b'\n');
    Ok(BufReader::new(Box::new(std::io::Cursor::new(line))))
}
