//! TLS for the HTTP API. With `client_ca`, the handshake asks for a client
//! certificate but lets a connection without one, or with one no CA here
//! signed, complete: the chain is checked after the handshake, so such a
//! client gets an HTTP 403 naming why (and an audit row) rather than a
//! bare TLS alert. Nothing is granted before that check passes; the
//! handshake still proves the client holds the certificate's key.

use super::config::{HttpAccess, TlsConfig};
use crate::api::Class;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Why TLS could not be set up, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// How a TLS listener decides a client's class.
pub struct TlsListener {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The real check of client chains (`None`: no `client_ca`).
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

impl TlsListener {
    pub fn new(config: &TlsConfig) -> Result<Self, TlsError> {
        let chain = certs(&config.cert)?;
        let key =
            PrivateKeyDer::from_pem_file(&config.key).map_err(|e| file_error(&config.key, e))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let (builder, verifier) = match &config.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs(ca)? {
                    roots.add(cert).map_err(|e| file_error(ca, e))?;
                }
                let strict =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| file_error(ca, e))?;
                let lenient = Arc::new(CheckLater(strict.clone()));
                (builder.with_client_cert_verifier(lenient), Some(strict))
            }
            None => (builder.with_no_client_auth(), None),
        };
        let mut server = builder.with_single_cert(chain, key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            verifier,
        })
    }

    /// The class of a client that presented `chain` (end entity first),
    /// with its certificate's common name; or why it gets none.
    pub fn identify(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
        access: &HttpAccess,
        trusted_network: bool,
    ) -> (Option<String>, Result<Class, String>) {
        let Some(verifier) = &self.verifier else {
            // Only allowed with trusted_network (see `ListenerConfig::check`).
            let class = match trusted_network {
                true => Ok(Class::Operate),
                false => Err("this listener trusts no client".to_string()),
            };
            return (None, class);
        };
        let Some((end, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return (
                None,
                Err("this listener needs a client certificate; none was presented".into()),
            );
        };
        if let Err(e) = verifier.verify_client_cert(end, intermediates, UnixTime::now()) {
            return (
                None,
                Err(format!("the client certificate is not trusted here: {e}")),
            );
        }
        let Some(cn) = common_name(end) else {
            return (
                None,
                Err("the client certificate has no common name (CN)".into()),
            );
        };
        let class = if access.operate_subjects.contains(&cn) {
            Ok(Class::Operate)
        } else if access.read_subjects.contains(&cn) {
            Ok(Class::Read)
        } else {
            Err(format!(
                "certificate CN={cn} is in neither http.access.operate_subjects nor read_subjects"
            ))
        };
        (Some(format!("CN={cn}")), class)
    }
}

/// The certificate's subject common name.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    // id-at-commonName
    let cn = x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == cn)
        .and_then(|atv| {
            use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
            atv.value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .ok()
        })
}

/// Asks for a client certificate, checks the handshake's signatures with
/// the real verifier, and leaves the chain to [`TlsListener::identify`].
#[derive(Debug)]
struct CheckLater(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for CheckLater {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
