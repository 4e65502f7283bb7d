//! A TCP proxy with an idle timeout in front of an API server (the test bed's), like the
//! cloud load balancer in front of a real one (Cluster API on OpenStack puts an Octavia
//! load balancer there; its listener's `timeout_client_data` and `timeout_member_data`
//! default to 50 s): bytes pass through unchanged (TLS stays end to end: the server
//! certificate is valid for 127.0.0.1 on any port), and a connection through which
//! nothing passed in either direction for the idle timeout is closed on both sides,
//! mid-response or not. What a client sees is what it sees behind such a load balancer: a
//! followed log, a watch or a pooled keep-alive connection that is silent for that long
//! breaks off.

use super::util::Background;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running proxy. Dropping it stops it (open connections end with its runtime).
pub struct IdleProxy {
    /// Stops the server first when dropped.
    _server: Background,
    addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
}

impl IdleProxy {
    /// Proxies `127.0.0.1:<random port>` to `target` (e.g. the test bed's API server),
    /// closing connections idle for `idle`.
    pub fn start(target: SocketAddr, idle: Duration) -> IdleProxy {
        IdleProxy::start_at("127.0.0.1:0".parse().expect("address"), target, idle)
    }

    /// [`IdleProxy::start`] on `listen`: e.g. an address a client was already given, to
    /// end an outage it saw (nothing listened there before).
    pub fn start_at(listen: SocketAddr, target: SocketAddr, idle: Duration) -> IdleProxy {
        let listener = std::net::TcpListener::bind(listen).expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        let cuts = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread_cuts = cuts.clone();
        let thread = std::thread::Builder::new()
            .name("idle-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("proxy listener");
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((client, _)) = accepted else { continue };
                                let cuts = thread_cuts.clone();
                                tokio::spawn(relay(client, target, idle, cuts));
                            }
                        }
                    }
                });
                rt.shutdown_background();
            })
            .expect("spawn proxy");
        IdleProxy {
            addr,
            cuts,
            _server: Background::new(tx, thread),
        }
    }

    /// `https://127.0.0.1:<port>`: the API server's URL through the proxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many connections the proxy has closed for being idle.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// Copies both ways until either side closes or nothing passed for `idle`.
async fn relay(
    client: tokio::net::TcpStream,
    target: SocketAddr,
    idle: Duration,
    cuts: Arc<AtomicUsize>,
) {
    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                mut to: tokio::net::tcp::OwnedWriteHalf,
                last: Arc<std::sync::Mutex<Instant>>| async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let up = tokio::spawn(pump(cr, sw, last.clone()));
    let down = tokio::spawn(pump(sr, cw, last.clone()));
    loop {
        let since = last.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
        if up.is_finished() && down.is_finished() {
            return;
        }
        if since >= idle {
            up.abort();
            down.abort();
            cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        tokio::time::sleep(idle - since).await;
    }
}
