//! Local forward proxies for `proxy-url` tests, on 127.0.0.1 and their own thread:
//! HTTP `CONNECT` (RFC 9110 §9.3.6) in plain text or inside TLS (an `https://` proxy, with a
//! certificate from its own CA, [`Proxy::ca_pem`]), and SOCKS5 (RFC 1928, no
//! authentication, CONNECT only). Each records the targets of the tunnels it opened, so a
//! test can assert that the traffic really went through it. Every tunnel ends at 127.0.0.1
//! on the requested port, whatever host was asked for, so tests can use names that resolve
//! nowhere (and send nothing off this machine). Dropping it stops it.

use super::util::Background;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which protocol a [`Proxy`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    HttpConnect,
    HttpsConnect,
    Socks5,
}

/// A running proxy.
pub struct Proxy {
    /// Stops the server first when dropped.
    _server: Background,
    /// `http://127.0.0.1:PORT`, `https://127.0.0.1:PORT` or `socks5://127.0.0.1:PORT`.
    pub url: String,
    /// PEM of the CA that signed an `https://` proxy's certificate (empty otherwise).
    pub ca_pem: String,
    tunnels: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts a proxy of `kind`. Panics if setup fails (test setup).
    pub fn start(kind: Kind) -> Proxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        let (acceptor, ca_pem) = match kind {
            Kind::HttpsConnect => {
                let (acceptor, ca) = tls_acceptor();
                (Some(acceptor), ca)
            }
            _ => (None, String::new()),
        };
        let scheme = match kind {
            Kind::HttpConnect => "http",
            Kind::HttpsConnect => "https",
            Kind::Socks5 => "socks5",
        };
        let tunnels: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = tunnels.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("proxy listener");
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            let recorded = recorded.clone();
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                match (kind, acceptor) {
                                    (Kind::Socks5, _) => socks5(client, recorded).await,
                                    (_, Some(acceptor)) => {
                                        if let Ok(tls) = acceptor.accept(client).await {
                                            connect(tls, recorded).await;
                                        }
                                    }
                                    (_, None) => connect(client, recorded).await,
                                }
                            });
                        }
                    }
                }
            });
        });
        Proxy {
            url: format!("{scheme}://{addr}"),
            ca_pem,
            tunnels,
            _server: Background::new(tx, thread),
        }
    }

    /// The `host:port` targets of the tunnels opened so far.
    pub fn tunnels(&self) -> Vec<String> {
        self.tunnels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A TLS acceptor for 127.0.0.1 with a certificate from a fresh CA, and that CA's PEM.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "proxy-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("proxy key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("proxy cert params")
        .signed_by(&key, &issuer)
        .expect("sign proxy cert");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![rustls::pki_types::CertificateDer::from(cert.der().to_vec())],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("TLS config");
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_cert.pem(),
    )
}

/// HTTP CONNECT: read the request head, open the tunnel, answer 200, relay.
async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    recorded: Arc<Mutex<Vec<String>>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(loopback(target)).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(target.to_string());
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// `127.0.0.1:<port of target>`.
fn loopback(target: &str) -> String {
    let port = target.rsplit_once(':').map(|(_, p)| p).unwrap_or("443");
    format!("127.0.0.1:{port}")
}

/// SOCKS5 without authentication: greeting, CONNECT request, reply, relay.
async fn socks5(mut client: TcpStream, recorded: Arc<Mutex<Vec<String>>>) {
    let mut greeting = [0u8; 2];
    if client.read_exact(&mut greeting).await.is_err() || greeting[0] != 5 {
        return;
    }
    let mut methods = vec![0u8; greeting[1] as usize];
    if client.read_exact(&mut methods).await.is_err() || !methods.contains(&0) {
        let _ = client.write_all(&[5, 0xff]).await;
        return;
    }
    if client.write_all(&[5, 0]).await.is_err() {
        return;
    }
    let mut request = [0u8; 4];
    if client.read_exact(&mut request).await.is_err() || request[1] != 1 {
        return;
    }
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            if client.read_exact(&mut ip).await.is_err() {
                return;
            }
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            if client.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut name = vec![0u8; len[0] as usize];
            if client.read_exact(&mut name).await.is_err() {
                return;
            }
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut ip = [0u8; 16];
            if client.read_exact(&mut ip).await.is_err() {
                return;
            }
            format!("[{}]", std::net::Ipv6Addr::from(ip))
        }
        _ => return,
    };
    let mut port = [0u8; 2];
    if client.read_exact(&mut port).await.is_err() {
        return;
    }
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    let Ok(mut upstream) = TcpStream::connect(loopback(&target)).await else {
        let _ = client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return;
    };
    recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(target);
    if client
        .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
