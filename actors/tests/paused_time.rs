//! Timeouts, retries and delivery under loss with tokio's clock paused: the
//! SP is an in-memory simulated device behind the `Transport` trait, so
//! every run is deterministic and takes no real time.

use actors::registry::{RegistryConfig, RegistryHandle, SpEntry};
use actors::rpc::RpcError;
use actors::sp::{Rpc, SpSettings, SpTarget};
use actors::transport::{Datagram, RecvFuture, Transport};
use actors::Phase;
use gateway_messages::sp_impl::handle_request;
use gateway_messages::{mgs, MgsRequest, SpError, SpResponse, MAX_SERIALIZED_SIZE};
use sp_sim::device::{Device, DeviceConfig, SpKind, Timings};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const SP: &str = "[::1]:11111";

/// What the fake network does with a request.
#[derive(Clone, Copy)]
enum Mode {
    /// Nothing ever answers.
    Silent,
    /// Answer `Busy` this many times, then serve.
    BusyFirst(u32),
    /// Serve, losing this fraction of datagrams each way (seeded).
    Lossy(f64),
}

struct MemSp {
    device: Mutex<Device>,
    mode: Mode,
    busy_left: Mutex<u32>,
    rng: Mutex<u64>,
    sent: Mutex<Vec<Vec<u8>>>,
    to_mgs: mpsc::UnboundedSender<Datagram>,
    from_sp: tokio::sync::Mutex<mpsc::UnboundedReceiver<Datagram>>,
}

impl MemSp {
    fn new(mode: Mode) -> Arc<Self> {
        let (to_mgs, from_sp) = mpsc::unbounded_channel();
        let device = Device::new(
            DeviceConfig {
                kind: SpKind::Sled,
                serial: "BRM42000001".into(),
                revision: 6,
                timings: Timings {
                    host_flash_mib: 1,
                    ..Timings::instant()
                },
                store_dir: None,
            },
            Instant::now(),
        );
        let busy_left = match mode {
            Mode::BusyFirst(n) => n,
            _ => 0,
        };
        Arc::new(Self {
            device: Mutex::new(device),
            mode,
            busy_left: Mutex::new(busy_left),
            rng: Mutex::new(1),
            sent: Mutex::new(Vec::new()),
            to_mgs,
            from_sp: tokio::sync::Mutex::new(from_sp),
        })
    }

    fn lose(&self) -> bool {
        let Mode::Lossy(p) = self.mode else {
            return false;
        };
        let mut s = self.rng.lock().unwrap();
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*s >> 33) as f64 / (1u64 << 31) as f64) < p
    }
}

impl Transport for MemSp {
    fn send_to(&self, datagram: &[u8], _: SocketAddr) -> std::io::Result<()> {
        self.sent.lock().unwrap().push(datagram.to_vec());
        if matches!(self.mode, Mode::Silent) || self.lose() {
            return Ok(());
        }
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let n = {
            let mut busy = self.busy_left.lock().unwrap();
            if *busy > 0 {
                *busy -= 1;
                let id = gateway_messages::decode_header(datagram)
                    .unwrap()
                    .message_id;
                let msg = gateway_messages::Message {
                    header: gateway_messages::Header {
                        version: gateway_messages::version::CURRENT,
                        message_id: id,
                    },
                    kind: gateway_messages::MessageKind::SpResponse(SpResponse::Error(
                        SpError::Busy,
                    )),
                };
                gateway_messages::encode(&mut out, &msg, &[])
                    .ok()
                    .map(|(n, _)| n)
            } else {
                let mut dev = self.device.lock().unwrap();
                dev.now = Instant::now();
                handle_request(datagram, &mut *dev, &mut out)
            }
        };
        if let Some(n) = n {
            if !self.lose() {
                let _ = self.to_mgs.send((out[..n].to_vec(), SP.parse().unwrap()));
            }
        }
        Ok(())
    }

    fn recv(&self) -> RecvFuture<'_> {
        Box::pin(async move {
            let mut rx = self.from_sp.lock().await;
            rx.recv()
                .await
                .ok_or_else(|| std::io::ErrorKind::BrokenPipe.into())
        })
    }
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    });
    system.block_on(f);
}

fn registry(sp: Arc<MemSp>, settings: SpSettings) -> RegistryHandle {
    let entry = SpEntry {
        name: "sled-0".into(),
        target: SpTarget::Addr(SP.parse().unwrap()),
    };
    let mut cfg = RegistryConfig::new(vec![entry], settings);
    cfg.transport = Arc::new(move |_| Ok(sp.clone() as Arc<dyn Transport>));
    RegistryHandle::start(cfg).unwrap()
}

#[test]
fn unanswered_requests_are_resent_identically_then_time_out() {
    run(async {
        let sp = MemSp::new(Mode::Silent);
        let h = registry(sp.clone(), SpSettings::default());
        let addr = h.resolve("sled-0").await.unwrap();
        sp.sent.lock().unwrap().clear();
        let t0 = Instant::now();
        let err = addr
            .send(Rpc::new(MgsRequest::GetPowerState))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, RpcError::Timeout { attempts: 5, .. }),
            "{err}"
        );
        // Five attempts of 2 s each (the reference client's defaults).
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        let sent = sp.sent.lock().unwrap().clone();
        let power: Vec<_> = sent
            .iter()
            .filter(|d| {
                matches!(
                    gateway_messages::decode(d).unwrap().0.kind,
                    gateway_messages::MessageKind::MgsRequest(MgsRequest::GetPowerState)
                )
            })
            .collect();
        assert_eq!(power.len(), 5);
        assert!(
            power.windows(2).all(|w| w[0] == w[1]),
            "resends are identical bytes"
        );
        assert!(!h.info("sled-0").await.unwrap().reachable);
    });
}

#[test]
fn busy_backs_off_without_using_up_attempts() {
    run(async {
        let sp = MemSp::new(Mode::BusyFirst(0));
        let h = registry(sp.clone(), SpSettings::default());
        let addr = h.resolve("sled-0").await.unwrap();
        // Wait for discovery, then make the SP busy for 8 answers.
        while !h.info("sled-0").await.unwrap().reachable {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        *sp.busy_left.lock().unwrap() = 8;
        let t0 = Instant::now();
        let (r, _) = addr
            .send(Rpc::new(MgsRequest::GetPowerState))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, SpResponse::PowerState(gateway_messages::PowerState::A0));
        // 20 + 40 + 80 + 160 + 320 + 640 + 1000 + 1000 ms of backoff.
        assert_eq!(t0.elapsed(), Duration::from_millis(3260));
    });
}

#[test]
fn stale_duplicate_and_foreign_datagrams_are_ignored() {
    run(async {
        let sp = MemSp::new(Mode::BusyFirst(0));
        let h = registry(sp.clone(), SpSettings::default());
        let addr = h.resolve("sled-0").await.unwrap();
        while !h.info("sled-0").await.unwrap().reachable {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A response to a long-gone request, and one from a stranger.
        let stale = mgs::RequestDatagram::new(1, MgsRequest::Discover, &[]);
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let n =
            handle_request(stale.as_bytes(), &mut *sp.device.lock().unwrap(), &mut out).unwrap();
        sp.to_mgs
            .send((out[..n].to_vec(), SP.parse().unwrap()))
            .unwrap();
        sp.to_mgs
            .send((out[..n].to_vec(), "[::1]:9".parse().unwrap()))
            .unwrap();
        let (r, _) = addr
            .send(Rpc::new(MgsRequest::GetPowerState))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, SpResponse::PowerState(gateway_messages::PowerState::A0));
    });
}

#[test]
fn update_completes_under_ten_percent_loss_each_way() {
    run(async {
        let sp = MemSp::new(Mode::Lossy(0.10));
        let mut settings = SpSettings::default();
        settings.delivery.host_flash_capacity_mib = 1;
        settings.rpc.max_attempts = 20;
        let h = registry(sp.clone(), settings);
        let id = uuid::Uuid::from_u128(0x1234);
        let mut image = vec![0xFFu8; 64 * 1024];
        image.extend((0..200_000u32).map(|i| (i % 251) as u8));
        let t0 = Instant::now();
        loop {
            match h
                .start_update("sled-0", "host-boot-flash", 0, id, image.clone())
                .await
            {
                Ok(_) => break,
                // Not discovered yet (the Discover was lost): try again.
                Err(e) => {
                    assert!(t0.elapsed() < Duration::from_secs(60), "{e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let r = loop {
            let r = h.update_record(id).await.unwrap();
            if r.phase.is_terminal() {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(r.phase, Phase::Complete, "{r:?}");
        assert!(r.hash_verified && r.rewinds > 0 && r.timeouts > 0, "{r:?}");
    });
}
