//! HTTP_GET and SSL_GET: each `url` is fetched on its own connection (hyper, HTTP/1.x; TLS by
//! rustls for SSL_GET) and must answer with one of its `status_code`s, and, when given, a body
//! whose MD5 is `digest` (as `keepalived --genhash` computes it: the body only) and which
//! matches `regex` (or must not, with `regex_no_match`).
//!
//! Each URL must complete within `connect_timeout` (connect, TLS, headers and body), the body
//! is read into at most [`MAX_BODY`] bytes, and headers are bounded by hyper: garbage, a huge
//! body, a slowloris drip or a handshake that never ends all fail with the stage and reason.
//!
//! The request is keepalived's: `GET path HTTP/1.0` by default (`http_protocol 1.0C` adds
//! `Connection: close`, `1.1` sends HTTP/1.1 with `Connection: close`), `User-Agent:
//! KeepAliveClient`, and `Host:` the first `virtualhost` of the url, the checker, the
//! real_server and the virtual_server (the configuration parser passes the last two down),
//! else `ADDR:PORT` of the target.
//!
//! Certificates: without `SSL { ca ... }` in the configuration any server certificate is
//! accepted, as keepalived does; with a CA the chain is verified against it, for the URL's
//! virtualhost when one is set (else the address). `SSL { certificate key }` gives a client
//! certificate. `enable_sni` sends that virtualhost as SNI.

use std::{
    fmt::{self, Write as _},
    pin::Pin,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::{BodyExt as _, Empty};
use hyper::{
    body::Bytes,
    header::{HeaderValue, CONNECTION, HOST, USER_AGENT},
    Request, Uri, Version,
};
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{connect_tcp_unbounded, CheckError, Success, Target};
use crate::config::{model::{Checker, CheckerKind, RealServer, StatusRange}, Config};

/// Bodies are read into at most this many bytes; a longer body fails the check.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// keepalived's User-Agent.
const AGENT: &str = "KeepAliveClient";

/// One `url` block, ready to check.
#[derive(Clone, Debug)]
pub struct UrlCheck {
    /// `path`.
    pub path: String,
    /// `status_code` ranges (default 200-299).
    pub status: Vec<StatusRange>,
    /// `digest`, lower case.
    pub digest: Option<String>,
    /// `regex`, compiled.
    pub regex: Option<regex::bytes::Regex>,
    /// `regex_no_match`.
    pub regex_no_match: bool,
    /// The Host header.
    pub host: String,
    /// `path` as the request target, parsed once (`None`: invalid, each check fails saying why).
    pub uri: Option<Uri>,
    /// `host` as a header value, validated once (`None`: invalid, as for `uri`).
    pub host_value: Option<HeaderValue>,
    /// The TLS server name (SNI with `enable_sni`, and the name certificates are verified
    /// for): the virtualhost, else the target address.
    pub server_name: ServerName<'static>,
}

/// An HTTP_GET or SSL_GET.
pub struct HttpProbe {
    /// Where to connect.
    pub target: Target,
    /// The URLs, all of which must pass.
    pub urls: Vec<UrlCheck>,
    /// `http_protocol`: HTTP/1.0 (`1.0`, `1.0C`) or HTTP/1.1.
    pub version: Version,
    /// Whether to send `Connection: close` (`1.0C` and `1.1`).
    pub close: bool,
    /// TLS settings for SSL_GET.
    pub tls: Option<Arc<ClientConfig>>,
    /// `connect_timeout`, the budget of each URL.
    pub timeout: Duration,
}

impl fmt::Debug for HttpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbe").field("target", &self.target).field("urls", &self.urls).field("tls", &self.tls.is_some()).finish()
    }
}

impl HttpProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// A regex does not compile, or the TLS material cannot be loaded.
    pub fn build(checker: &Checker, rs: &RealServer, cfg: &Config) -> Result<HttpProbe, CheckError> {
        let CheckerKind::Http { ssl, urls, http_protocol, virtualhost, enable_sni, .. } = &checker.kind else {
            return Err(CheckError::Config("not an HTTP checker".into()));
        };
        let target = Target::of(checker, rs, if *ssl { 443 } else { 80 });
        // `virtualhost` here is the checker's, or else the real server's or virtual server's
        // (inherited by the parser); without one keepalived sends the target `ADDR:PORT`.
        let addr_host = target.addr.to_string();
        let addr_name = ServerName::IpAddress(target.addr.ip().into());
        let name_of = |host: &Option<String>| -> ServerName<'static> {
            host.as_deref().and_then(|h| ServerName::try_from(h.to_owned()).ok()).unwrap_or_else(|| addr_name.clone())
        };
        let mut checks = Vec::with_capacity(urls.len());
        for u in urls {
            let regex = match &u.regex {
                Some(r) => Some(regex::bytes::Regex::new(r).map_err(|e| CheckError::Config(format!("regex {r:?}: {e}")))?),
                None => None,
            };
            let host = u.virtualhost.clone().or_else(|| virtualhost.clone()).unwrap_or_else(|| addr_host.clone());
            let uri = Uri::try_from(u.path.as_str()).ok();
            let host_value = HeaderValue::try_from(host.as_str()).ok();
            checks.push(UrlCheck {
                path: u.path.clone(),
                uri,
                host_value,
                status: if u.status_codes.is_empty() { vec![StatusRange { first: 200, last: 299 }] } else { u.status_codes.clone() },
                digest: u.digest.as_ref().map(|d| d.to_ascii_lowercase()),
                regex,
                regex_no_match: u.regex_no_match,
                host,
                server_name: name_of(&u.virtualhost.clone().or_else(|| virtualhost.clone())),
            });
        }
        if checks.is_empty() {
            return Err(CheckError::Config("no url { path ... } to check".into()));
        }
        let (version, close) = match http_protocol.as_deref() {
            Some("1.0C") | Some("1.0c") => (Version::HTTP_10, true),
            // keepalived's default is 1.0 (check_http.c alloc_http_get).
            None | Some("1.0") => (Version::HTTP_10, false),
            Some("1.1") => (Version::HTTP_11, true),
            Some(other) => return Err(CheckError::Config(format!("unknown http_protocol {other:?}"))),
        };
        // rustls never sends an IP address as SNI, so URLs without a virtualhost send none.
        let tls = if *ssl { Some(Arc::new(tls_config(cfg, *enable_sni)?)) } else { None };
        Ok(HttpProbe { target, urls: checks, version, close, tls, timeout: checker.connect_timeout })
    }

    /// Fetches every URL.
    ///
    /// # Errors
    /// The first URL that fails, with why.
    pub async fn run(&self) -> Result<Success, CheckError> {
        let mut detail = String::from("HTTP ");
        for (i, url) in self.urls.iter().enumerate() {
            // One timer bounds the whole URL; the stage it was in names a timeout.
            let stage = Stage::default();
            let code = match tokio::time::timeout(self.timeout, self.fetch_url(url, &stage)).await {
                Ok(r) => r?,
                Err(_) => return Err(CheckError::Timeout { stage: stage.get(), after: self.timeout }),
            };
            if i > 0 {
                detail.push_str(", ");
            }
            let _ = write!(detail, "{} {code}", url.path);
        }
        Ok(Success::new(detail))
    }

    /// Connect, TLS and the exchange of one URL, unbounded in time (the caller bounds it).
    async fn fetch_url(&self, url: &UrlCheck, stage: &Stage) -> Result<u16, CheckError> {
        // Plain HTTP writes its request in one go: TCP_NODELAY only matters under TLS.
        let stream = CloseOnDrop(connect_tcp_unbounded(&self.target, self.tls.is_some()).await?);
        match &self.tls {
            None => self.fetch(stream, url, stage).await,
            Some(config) => {
                stage.set(Stage::TLS);
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = connector.connect(url.server_name.clone(), stream).await.map_err(|e| CheckError::Tls(tls_reason(&e)))?;
                self.fetch(tls, url, stage).await
            }
        }
    }

    /// One request/response exchange on `io`, checked against `url`. Returns the status.
    async fn fetch<S>(&self, io: S, url: &UrlCheck, stage: &Stage) -> Result<u16, CheckError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        stage.set(Stage::START);
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| CheckError::Protocol(e.to_string()))?;
        let req = self.request(url)?;
        let exchange = async {
            stage.set(Stage::HEADERS);
            let resp = sender.send_request(req).await.map_err(|e| CheckError::Protocol(format!("invalid HTTP response: {e}")))?;
            let code = resp.status().as_u16();
            if !url.status.iter().any(|r| (r.first..=r.last).contains(&code)) {
                return Err(CheckError::Mismatch(format!("HTTP status {code} not in {}", ranges(&url.status))));
            }
            stage.set(Stage::BODY);
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| CheckError::Protocol(format!("reading the body: {e}")))?;
                if let Some(data) = frame.data_ref() {
                    if buf.len() + data.len() > MAX_BODY {
                        return Err(CheckError::Mismatch(format!("response body larger than {MAX_BODY} bytes")));
                    }
                    buf.extend_from_slice(data);
                }
            }
            check_body(url, &buf)?;
            Ok(code)
        };
        tokio::pin!(exchange);
        tokio::pin!(conn);
        tokio::select! {
            // The exchange first: once the body is complete the check is decided.
            biased;
            r = &mut exchange => r,
            c = &mut conn => match c {
                Err(e) => Err(CheckError::Protocol(format!("invalid HTTP response: {e}"))),
                Ok(()) => exchange.await,
            },
        }
    }
}

impl HttpProbe {
    /// The request of `url`, from the parts parsed when the probe was built.
    fn request(&self, url: &UrlCheck) -> Result<Request<Empty<Bytes>>, CheckError> {
        let (Some(uri), Some(host)) = (&url.uri, &url.host_value) else {
            // Invalid path or Host: let the builder say what is wrong.
            let err = Request::builder().uri(&url.path).header(HOST, &url.host).body(Empty::<Bytes>::new()).err();
            let e = err.map_or_else(|| "invalid request".to_owned(), |e| e.to_string());
            return Err(CheckError::Config(format!("path {:?}: {e}", url.path)));
        };
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = uri.clone();
        *req.version_mut() = self.version;
        let h = req.headers_mut();
        h.insert(HOST, host.clone());
        h.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        if self.close {
            h.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(req)
    }
}

/// The check's TCP stream, whose `shutdown` does nothing: the stream is dropped (closed, which
/// sends the same FIN) as soon as the exchange ends, so the `shutdown(2)` hyper issues when the
/// server ends the connection would only be one more syscall per check.
struct CloseOnDrop(tokio::net::TcpStream);

impl AsyncRead for CloseOnDrop {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for CloseOnDrop {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The step an HTTP check is in, for the timeout message. An atomic (not a `Cell`) so the
/// check's future stays `Send`; only one task ever touches it.
#[derive(Debug, Default)]
struct Stage(AtomicU8);

impl Stage {
    const CONNECT: u8 = 0;
    const TLS: u8 = 1;
    const START: u8 = 2;
    const HEADERS: u8 = 3;
    const BODY: u8 = 4;

    fn set(&self, s: u8) {
        self.0.store(s, Ordering::Relaxed);
    }

    fn get(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::CONNECT => "connecting",
            Self::TLS => "in the TLS handshake",
            Self::START => "starting HTTP",
            Self::HEADERS => "waiting for the response headers",
            _ => "reading the response body",
        }
    }
}

/// Checks a complete body against the URL's digest and regex.
///
/// # Errors
/// The digest differs, or the regex does (not) match.
pub fn check_body(url: &UrlCheck, body: &[u8]) -> Result<(), CheckError> {
    if let Some(want) = &url.digest {
        let got = genhash(body);
        if &got != want {
            return Err(CheckError::Mismatch(format!("digest {got} of {} body bytes, expected {want}", body.len())));
        }
    }
    if let Some(re) = &url.regex {
        let found = re.is_match(body);
        if found == url.regex_no_match {
            let how = if url.regex_no_match { "matches" } else { "does not match" };
            return Err(CheckError::Mismatch(format!("body {how} regex {:?}", re.as_str())));
        }
    }
    Ok(())
}

/// The MD5 of a body in lower-case hex, as `keepalived --genhash` prints it.
pub fn genhash(body: &[u8]) -> String {
    let d = Md5::digest(body);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn ranges(r: &[StatusRange]) -> String {
    r.iter()
        .map(|r| if r.first == r.last { r.first.to_string() } else { format!("{}-{}", r.first, r.last) })
        .collect::<Vec<_>>()
        .join(",")
}

fn tls_reason(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

/// The rustls client configuration from the `SSL` block.
fn tls_config(cfg: &Config, sni: bool) -> Result<ClientConfig, CheckError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CheckError::Tls(e.to_string()))?;
    let ssl = cfg.ssl.clone().unwrap_or_default();
    let builder = match &ssl.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca).map_err(|e| CheckError::Config(format!("CA file {ca}: {e}")))?;
            for c in certs {
                let c = c.map_err(|e| CheckError::Config(format!("CA file {ca}: {e}")))?;
                roots.add(c).map_err(|e| CheckError::Config(format!("CA file {ca}: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))),
    };
    let mut config = match (&ssl.certificate, &ssl.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| CheckError::Config(format!("certificate {cert}: {e}")))?;
            let text = std::fs::read_to_string(key).map_err(|e| CheckError::Config(format!("key {key}: {e}")))?;
            let key = load_key(&text, ssl.password.as_deref()).map_err(|e| CheckError::Config(format!("key {key}: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| CheckError::Config(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.enable_sni = sni;
    Ok(config)
}

/// The private key of the `SSL` block from its PEM `text`: a plain key (PKCS#8, PKCS#1, SEC1;
/// a `password` is then unused, as OpenSSL's callback is never asked), or an encrypted PKCS#8
/// key (`ENCRYPTED PRIVATE KEY`, PBES2) decrypted with `password`, as keepalived's
/// `password_cb` hands it to OpenSSL. OpenSSL's legacy encrypted PEM (`Proc-Type:
/// 4,ENCRYPTED`) is refused with the command that converts it.
///
/// # Errors
/// Not a key, encrypted without a password or with the wrong one, or a legacy encrypted PEM.
pub fn load_key(text: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(password) = password else {
            return Err("the key is encrypted: set its password in the SSL block (password)".to_owned());
        };
        use pkcs8::der::Decode as _;
        let (_, doc) = pkcs8::der::Document::from_pem(text).map_err(|e| format!("encrypted key: {e}"))?;
        let enc = pkcs8::EncryptedPrivateKeyInfoRef::from_der(doc.as_bytes()).map_err(|e| format!("encrypted key: {e}"))?;
        let plain = enc.decrypt(password.as_bytes()).map_err(|e| format!("cannot decrypt the key with the SSL block's password: {e}"))?;
        return Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err("OpenSSL's legacy encrypted PEM is not read by ka: convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out NEW` (same password)".to_owned());
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| e.to_string())
}

/// keepalived's SSL_GET without a CA: any certificate is accepted (signatures are still
/// checked, so the handshake itself is sound).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `SSL` block's key: an encrypted PKCS#8 key is decrypted with `password` (and fits
    /// its certificate as a TLS client identity); without a password, with a wrong one, and in
    /// OpenSSL's legacy encrypted PEM it is refused with why.
    #[test]
    fn ssl_keys_with_and_without_password() {
        let encrypted = include_str!("testdata/client-key.pem");
        let legacy = include_str!("testdata/client-key-legacy.pem");
        let key = load_key(encrypted, Some("s3cret")).expect("decrypted");
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        let chain = CertificateDer::pem_slice_iter(include_bytes!("testdata/client.pem")).collect::<Result<Vec<_>, _>>().expect("cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signer = provider.key_provider.load_private_key(key.clone_key()).expect("a usable key");
        let cert_key = rustls::sign::CertifiedKey::new(chain, signer);
        assert!(cert_key.keys_match().is_ok(), "the decrypted key is the certificate's");
        let cases = [
            (encrypted, None, "set its password"),
            (encrypted, Some("wrong"), "cannot decrypt"),
            (legacy, Some("s3cret"), "openssl pkcs8 -topk8"),
            ("not a key", None, ""),
        ];
        for (text, password, why) in cases {
            let e = load_key(text, password).expect_err("refused");
            assert!(e.contains(why), "{e}");
        }
    }

    /// The digest is the MD5 of the body alone, lower-case hex (`keepalived --genhash`).
    #[test]
    fn genhash_is_md5_of_body() {
        assert_eq!(genhash(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(genhash(b"hello\n"), "b1946ac92492d2347c6235b4d2611184");
    }

    fn url(digest: Option<&str>, regex: Option<&str>, no_match: bool) -> UrlCheck {
        UrlCheck {
            path: "/".into(),
            status: vec![StatusRange { first: 200, last: 299 }],
            digest: digest.map(str::to_owned),
            regex: regex.map(|r| regex::bytes::Regex::new(r).expect("regex")),
            regex_no_match: no_match,
            host: "h".into(),
            uri: Some(Uri::from_static("/")),
            host_value: Some(HeaderValue::from_static("h")),
            server_name: ServerName::try_from("h").expect("name").to_owned(),
        }
    }

    /// Digest and regex (and regex_no_match) decide on the body.
    #[test]
    fn body_checks() {
        assert!(check_body(&url(Some("b1946ac92492d2347c6235b4d2611184"), None, false), b"hello\n").is_ok());
        let e = check_body(&url(Some("00"), None, false), b"hello\n").expect_err("digest");
        assert!(e.to_string().contains("b1946ac9"), "{e}");
        assert!(check_body(&url(None, Some("he+llo"), false), b"hello").is_ok());
        assert!(check_body(&url(None, Some("bye"), false), b"hello").is_err());
        assert!(check_body(&url(None, Some("bye"), true), b"hello").is_ok());
        assert!(check_body(&url(None, Some("hello"), true), b"hello").is_err());
    }
}
