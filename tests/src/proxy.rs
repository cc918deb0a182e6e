//! A TCP proxy on loopback that plays a bad village link: it counts the bytes the phone sends,
//! can cut the first connection after a number of them, and can slow every connection down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the link misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    /// Cut the first connection that carries this many bytes upstream (once: later
    /// connections pass).
    pub cut_after: Option<u64>,
    /// Sleep this long after forwarding each 16 KiB upstream (a slow link).
    pub delay_per_16k: Option<Duration>,
}

/// A running proxy.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`, to use instead of the server's URL.
    pub url: String,
    upstream_bytes: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (an `http://host:port` URL).
    pub async fn start(upstream: &str, link: Link) -> std::io::Result<Self> {
        let target: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| std::io::Error::other(format!("{upstream}: {e}")))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let upstream_bytes = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let (bytes, was_cut) = (upstream_bytes.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                tokio::spawn(pipe(
                    client,
                    server,
                    link.cut_after,
                    link.delay_per_16k,
                    bytes.clone(),
                    was_cut.clone(),
                ));
            }
        });
        Ok(Self {
            url,
            upstream_bytes,
            cut,
            task,
        })
    }

    /// Bytes the phone sent through the proxy so far (headers included).
    pub fn upstream_bytes(&self) -> u64 {
        self.upstream_bytes.load(Ordering::SeqCst)
    }

    /// Whether the planned cut happened.
    pub fn was_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    cut_after: Option<u64>,
    delay: Option<Duration>,
    total: Arc<AtomicU64>,
    was_cut: Arc<AtomicBool>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(limit) = cut_after
            && sent + n as u64 >= limit
            && !was_cut.swap(true, Ordering::SeqCst)
        {
            // The link drops: both directions end mid-request.
            let keep = usize::try_from(limit.saturating_sub(sent)).unwrap_or(0);
            let _ = sw.write_all(&buf[..keep]).await;
            total.fetch_add(keep as u64, Ordering::SeqCst);
            down.abort();
            return;
        }
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
        sent += n as u64;
        total.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
}
