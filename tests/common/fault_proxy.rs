//! A TCP proxy that cuts and stalls connections on demand, between a replication
//! source and its replica.

/// A TCP proxy between source and replica that, while `chaos` is set, cuts
/// connections and stalls traffic at random.
pub struct FaultProxy {
    pub addr: std::net::SocketAddr,
    pub chaos: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chaos = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = chaos.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let one = pump(cr, sw, flag.clone());
                    let two = pump(sr, cw, flag);
                    // Either direction ending (or being cut) ends the connection.
                    tokio::select! { _ = one => {}, _ = two => {} }
                });
            }
        });
        FaultProxy { addr, chaos }
    }
}

/// Copies one direction; under chaos, each read may cut the connection (2%) or
/// stall it for up to 1.5 s (5%).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    chaos: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use rand::Rng;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if chaos.load(std::sync::atomic::Ordering::Relaxed) {
            let (roll, stall) = {
                let mut rng = rand::rng();
                (rng.random_range(0..100u32), rng.random_range(100..1500u64))
            };
            if roll < 2 {
                return;
            }
            if roll < 7 {
                tokio::time::sleep(std::time::Duration::from_millis(stall)).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
