//! Certificates for the tests (self-signed for the server, a CA and a leaf
//! for Redis), a server with TLS, and HTTP/2 spoken by hand over TLS.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use sse_ticket::config::TlsSetting;
use sse_ticket::tls::TlsFiles;

use super::{PATIENCE, SseStream, TestApp, spawn_app_with};

/// A self-signed certificate for `localhost` and 127.0.0.1 (`cert.pem`,
/// `key.pem`) in a directory of its own.
pub struct TestCert {
    pub dir: PathBuf,
}

impl TestCert {
    /// A fresh certificate and key, in a new temporary directory.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("sse-ticket-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let generated = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("a certificate");
        std::fs::write(dir.join("cert.pem"), generated.cert.pem()).expect("cert.pem");
        std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem())
            .expect("key.pem");
        Self { dir }
    }

    /// The certificate and key, as the server takes them.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert(),
            key: self.dir.join("key.pem"),
        }
    }

    /// The certificate file.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// A client that trusts only this certificate, on connections of its own.
    pub fn client(&self, http1_only: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(root_certificate(&self.cert()))
            .read_timeout(PATIENCE);
        if http1_only {
            builder = builder.http1_only();
        }
        builder.build().expect("client")
    }
}

/// A server with TLS, and its certificate.
pub async fn spawn_tls_app(tweak: impl FnOnce(&mut sse_ticket::Config)) -> (TestApp, TestCert) {
    let cert = TestCert::new();
    let files = cert.files();
    let app = spawn_app_with(move |config| {
        config.tls = Some(TlsSetting::Files(files));
        tweak(config);
    })
    .await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    (app, cert)
}

/// One HTTP/2 connection (TLS, ALPN `h2`) to `app`, trusting `cert`.
pub async fn h2_connection(app: &TestApp, cert: &TestCert) -> h2::client::SendRequest<Bytes> {
    let (client, connection) = h2::client::handshake(h2_tls(app, cert).await)
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    client
}

/// A TLS connection to `app` on which ALPN chose `h2`, before any HTTP/2 byte.
pub async fn h2_tls(
    app: &TestApp,
    cert: &TestCert,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert.cert()).expect("PEM") {
        roots.add(der.expect("a certificate")).expect("a root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(sse_ticket::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let addr = app.base.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN chose h2"
    );
    tls
}

/// Opens `/stream` with `ticket` as one more stream of `connection`, through `ready`.
pub async fn h2_stream(
    connection: &h2::client::SendRequest<Bytes>,
    app: &TestApp,
    ticket: &str,
) -> SseStream {
    let mut sender = connection.clone().ready().await.expect("a stream slot");
    let request = http::Request::get(app.url(&format!("/stream?token={ticket}")))
        .body(())
        .expect("request");
    let (response, _) = sender.send_request(request, true).expect("sent");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    let chunks = futures_util::stream::unfold(response.into_body(), |mut body| async move {
        let chunk = match body.data().await? {
            Ok(bytes) => {
                let _ = body.flow_control().release_capacity(bytes.len());
                Ok(bytes)
            }
            Err(e) => Err(e.to_string()),
        };
        Some((chunk, body))
    });
    let mut stream = SseStream::from_chunks(chunks);
    stream.next_frame().await; // retry
    assert_eq!(stream.next_frame().await.event.as_deref(), Some("ready"));
    stream
}

/// Writes a test CA (`ca.pem`) and a certificate it signed for `localhost`
/// and 127.0.0.1 (`leaf.pem`, `leaf.key`) into `dir`, with the openssl CLI.
pub fn tls_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=sse-ticket test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
    ]);
}

/// The PEM certificate at `path`, for a client to trust.
pub fn root_certificate(path: &std::path::Path) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(&std::fs::read(path).expect("the certificate file"))
        .expect("a PEM certificate")
}
