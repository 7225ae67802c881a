//! Deliver a 32 MiB host-flash image to every SP address given, all at
//! once, with the simulator's stop-and-wait client. Used to measure the
//! simulator's memory with a rack full of completed updates:
//!
//! ```sh
//! cargo run --release -p sp-sim -- --sleds 36 --switches 0 --power-shelves 0 --instant --base-port 31000 &
//! cargo run --release -p sp-sim --example update_all -- $(seq -f '[::1]:%g' 31000 31035)
//! ps -o rss= -p $(pgrep -x sp-sim)
//! ```

use gateway_messages::{SpComponent, UpdateId};
use sp_sim::client::Client;
use std::net::SocketAddr;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let mut image = vec![0xFFu8; 32 * 1024 * 1024];
    for (i, b) in image.iter_mut().enumerate().skip(64 * 1024) {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    let image = std::sync::Arc::new(image);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (n, addr) in addrs.into_iter().enumerate() {
        let image = image.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(addr).await?;
            let id = UpdateId([n as u8; 16]);
            c.update(SpComponent::HOST_CPU_BOOT_FLASH, 1, id, &image)
                .await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(addr)
        }));
    }
    let count = tasks.len();
    for t in tasks {
        let addr = t.await??;
        eprintln!("{addr}: complete");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{count} x 32 MiB host-flash updates in {secs:.1} s ({:.1} MiB/s aggregate, stop-and-wait)",
        count as f64 * 32.0 / secs
    );
    Ok(())
}
