//! The actors against an in-memory simulated SP behind the `Transport`
//! trait, with tokio's clock paused: timeouts, retries, loss recovery, the
//! one-update-per-id rule and the SP actor's lifecycle, each run
//! deterministic (seeded loss) and taking no real time.

use actors::registry::{RegistryConfig, RegistryHandle, SpEntry};
use actors::sp::SpTarget;
use actors::transport::Transport;
use actors::{
    ImageSource, Phase, Progress, RegistryError, RpcError, SpSettings, StartUpdate, UpdateError,
};
use gateway_messages::sp_impl::handle_request;
use gateway_messages::{
    mgs, Header, Message, MessageKind, MgsRequest, SpError, SpResponse, MAX_SERIALIZED_SIZE,
    MAX_UPDATE_CHUNK_DATA,
};
use sp_sim::device::{Device, DeviceConfig, SpKind, Timings};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const SP: &str = "[::1]:11111";
const HBF: &str = "host-boot-flash";

/// What the fake network and SP do.
#[derive(Default)]
struct Net {
    /// Nothing ever answers.
    silent: bool,
    /// Answer `Busy` this many times, then serve.
    busy_left: u32,
    /// Lose this fraction of requests / of replies.
    drop_requests: f64,
    drop_replies: f64,
    /// Lose the acks of this many accepted prepares.
    drop_prepare_acks: u32,
    rng: Option<fastrand::Rng>,
}

impl Net {
    fn lose(&mut self, p: f64) -> bool {
        p > 0.0
            && self
                .rng
                .get_or_insert_with(|| fastrand::Rng::with_seed(1))
                .f64()
                < p
    }
}

/// An SP that answers inside `send_to`, through an in-memory channel.
struct MemSp {
    device: Mutex<Device>,
    net: Mutex<Net>,
    /// Every datagram the daemon sent.
    sent: Mutex<Vec<Vec<u8>>>,
    to_mgs: mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>,
    from_sp: Mutex<mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>>,
}

impl MemSp {
    fn new(net: Net) -> Arc<Self> {
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
                watchdog: true,
            },
            Instant::now(),
        );
        Arc::new(Self {
            device: Mutex::new(device),
            net: Mutex::new(net),
            sent: Mutex::new(Vec::new()),
            to_mgs,
            from_sp: Mutex::new(from_sp),
        })
    }

    /// Requests the daemon sent, decoded.
    fn requests(&self) -> Vec<MgsRequest> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter_map(|d| match gateway_messages::decode(d) {
                Ok((m, _)) => match m.kind {
                    MessageKind::MgsRequest(r) => Some(r),
                    _ => None,
                },
                Err(_) => None,
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&MgsRequest) -> bool) -> usize {
        self.requests().iter().filter(|r| f(r)).count()
    }

    fn serve(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        let mut net = self.net.lock().unwrap();
        let drop_requests = net.drop_requests;
        if net.silent || net.lose(drop_requests) {
            return None;
        }
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let n = if net.busy_left > 0 {
            net.busy_left -= 1;
            let id = gateway_messages::decode_header(datagram).ok()?.message_id;
            let busy = Message {
                header: Header {
                    version: gateway_messages::version::CURRENT,
                    message_id: id,
                },
                kind: MessageKind::SpResponse(SpResponse::Error(SpError::Busy)),
            };
            gateway_messages::encode(&mut out, &busy, &[]).ok()?.0
        } else {
            let mut dev = self.device.lock().unwrap();
            dev.now = Instant::now();
            handle_request(datagram, &mut *dev, &mut out)?
        };
        let reply = out[..n].to_vec();
        if net.drop_prepare_acks > 0 {
            if let Ok((m, _)) = gateway_messages::decode(&reply) {
                if matches!(
                    m.kind,
                    MessageKind::SpResponse(SpResponse::ComponentUpdatePrepareAck)
                ) {
                    net.drop_prepare_acks -= 1;
                    return None;
                }
            }
        }
        let drop_replies = net.drop_replies;
        (!net.lose(drop_replies)).then_some(reply)
    }

    fn inject(&self, datagram: Vec<u8>, from: &str) {
        self.to_mgs.send((datagram, from.parse().unwrap())).unwrap();
    }
}

impl Transport for MemSp {
    fn send_to(&self, datagram: &[u8], _: SocketAddr) -> std::io::Result<()> {
        self.sent.lock().unwrap().push(datagram.to_vec());
        if let Some(reply) = self.serve(datagram) {
            let _ = self.to_mgs.send((reply, SP.parse().unwrap()));
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<(usize, SocketAddr)>> {
        match self.from_sp.lock().unwrap().poll_recv(cx) {
            Poll::Ready(Some((d, from))) => {
                buf[..d.len()].copy_from_slice(&d);
                Poll::Ready(Ok((d.len(), from)))
            }
            Poll::Ready(None) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The SP actor's end of the link; records when the actor drops it.
struct Port {
    sp: Arc<MemSp>,
    open: Arc<AtomicBool>,
}

impl Drop for Port {
    fn drop(&mut self) {
        self.open.store(false, Ordering::SeqCst);
    }
}

impl Transport for Port {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> std::io::Result<()> {
        self.sp.send_to(datagram, to)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<(usize, SocketAddr)>> {
        self.sp.poll_recv(cx, buf)
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

fn entry() -> SpEntry {
    SpEntry::new("sled-0", SpTarget::Addr(SP.parse().unwrap()))
}

/// A registry with one SP, `sp`; the flag turns false once its actor has
/// dropped its transport.
fn registry(sp: Arc<MemSp>, mut settings: SpSettings) -> (RegistryHandle, Arc<AtomicBool>) {
    // These tests count the requests of RPCs; the console's own (attach,
    // keep-alive) would be among them.
    settings.console.attach = false;
    let open = Arc::new(AtomicBool::new(true));
    let mut cfg = RegistryConfig::new(vec![entry()], settings);
    let flag = open.clone();
    cfg.transport = Arc::new(move |e: &SpEntry| {
        // Only sled-0 is the SP under test; any other gets its own.
        let port = if e.name.as_str() == "sled-0" {
            flag.store(true, Ordering::SeqCst);
            Port {
                sp: sp.clone(),
                open: flag.clone(),
            }
        } else {
            Port {
                sp: MemSp::new(Net::default()),
                open: Arc::new(AtomicBool::new(true)),
            }
        };
        Ok(Arc::new(port) as Arc<dyn Transport>)
    });
    (RegistryHandle::start(cfg).unwrap(), open)
}

async fn discovered(h: &RegistryHandle) {
    while !h.info("sled-0").await.unwrap().reachable {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn settings() -> SpSettings {
    let mut s = SpSettings::default();
    s.delivery.host_flash_capacity_mib = 1;
    s
}

fn image(len: usize, seed: u32) -> Vec<u8> {
    let mut image = vec![0xFFu8; 64 * 1024];
    image.extend((0..(len - image.len()) as u32).map(|i| (i.wrapping_mul(seed) % 251) as u8));
    image
}

/// A start of the raw image `img`.
fn bytes(sp: &str, component: &str, slot: u16, id: uuid::Uuid, img: Vec<u8>) -> StartUpdate {
    StartUpdate::new(sp, component, slot, id, ImageSource::Bytes(img))
}

async fn terminal(h: &RegistryHandle, id: uuid::Uuid) -> Progress {
    let mut rx = h.update(id).await.unwrap().watch();
    let r = rx
        .wait_for(|r| r.phase.is_terminal())
        .await
        .unwrap()
        .clone();
    r
}

fn is_chunk(r: &MgsRequest) -> bool {
    matches!(r, MgsRequest::UpdateChunk(_))
}

fn is_prepare(r: &MgsRequest) -> bool {
    matches!(r, MgsRequest::ComponentUpdatePrepare(_))
}

#[test]
fn unanswered_requests_are_resent_identically_then_time_out() {
    run(async {
        let sp = MemSp::new(Net {
            silent: true,
            ..Net::default()
        });
        let (h, _) = registry(sp.clone(), SpSettings::default());
        let sled = h.sp("sled-0").await.unwrap();
        sp.sent.lock().unwrap().clear();
        let t0 = Instant::now();
        let err = sled.rpc(MgsRequest::GetPowerState).await.unwrap_err();
        assert!(
            matches!(err, RpcError::Timeout { attempts: 5, .. }),
            "{err}"
        );
        // No round trip measured: five attempts of 2 s each (the
        // reference client's patience).
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        let sent = sp.sent.lock().unwrap().clone();
        let power: Vec<_> = sent
            .iter()
            .filter(|d| {
                matches!(
                    gateway_messages::decode(d).unwrap().0.kind,
                    MessageKind::MgsRequest(MgsRequest::GetPowerState)
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
fn busy_backs_off_without_using_up_patience() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, _) = registry(sp.clone(), SpSettings::default());
        discovered(&h).await;
        sp.net.lock().unwrap().busy_left = 8;
        let t0 = Instant::now();
        let (r, _) = h.rpc("sled-0", MgsRequest::GetPowerState).await.unwrap();
        assert_eq!(r, SpResponse::PowerState(gateway_messages::PowerState::A0));
        // 20 + 40 + 80 + 160 + 320 + 640 + 1000 + 1000 ms of backoff.
        assert_eq!(t0.elapsed(), Duration::from_millis(3260));
    });
}

#[test]
fn message_ids_start_at_random() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, _) = registry(sp.clone(), SpSettings::default());
        discovered(&h).await;
        let first = gateway_messages::decode_header(&sp.sent.lock().unwrap()[0])
            .unwrap()
            .message_id;
        let sp2 = MemSp::new(Net::default());
        let (h2, _) = registry(sp2.clone(), SpSettings::default());
        discovered(&h2).await;
        let first2 = gateway_messages::decode_header(&sp2.sent.lock().unwrap()[0])
            .unwrap()
            .message_id;
        assert_ne!((first, first2), (1, 1));
        assert_ne!(first, first2);
    });
}

#[test]
fn stale_duplicate_and_foreign_datagrams_are_ignored() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, _) = registry(sp.clone(), SpSettings::default());
        discovered(&h).await;
        // A response to a long-gone request, and one from a stranger.
        let stale = mgs::RequestDatagram::new(1, MgsRequest::Discover, &[]);
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let n =
            handle_request(stale.as_bytes(), &mut *sp.device.lock().unwrap(), &mut out).unwrap();
        sp.inject(out[..n].to_vec(), SP);
        sp.inject(out[..n].to_vec(), "[::1]:9");
        sp.inject(b"junk".to_vec(), SP);
        let (r, _) = h.rpc("sled-0", MgsRequest::GetPowerState).await.unwrap();
        assert_eq!(r, SpResponse::PowerState(gateway_messages::PowerState::A0));
    });
}

#[test]
fn update_completes_under_ten_percent_loss_each_way() {
    run(async {
        let sp = MemSp::new(Net {
            drop_requests: 0.1,
            drop_replies: 0.1,
            ..Net::default()
        });
        let (h, _) = registry(sp.clone(), settings());
        discovered(&h).await;
        let id = uuid::Uuid::from_u128(0x1234);
        let img = image(264 * 1024, 7);
        h.start_update(bytes("sled-0", HBF, 0, id, img.clone()))
            .await
            .unwrap();
        let r = terminal(&h, id).await;
        assert_eq!(r.phase, Phase::Complete, "{r:?}");
        assert!(r.hash_verified && r.rewinds > 0 && r.timeouts > 0, "{r:?}");
        assert_eq!(
            sp.device.lock().unwrap().slot_hash(0),
            Some(sp_sim::expected_slot_hash(&img, 1024 * 1024))
        );
    });
}

#[test]
fn lost_earlier_acks_cost_no_retransmission() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, _) = registry(sp.clone(), settings());
        discovered(&h).await;
        // From here on a fifth of the replies are lost, no request is.
        sp.net.lock().unwrap().drop_replies = 0.2;
        let id = uuid::Uuid::from_u128(0x5678);
        let img = image(512 * 1024, 3);
        // The prepare may need resends; its id makes them harmless.
        h.start_update(bytes("sled-0", HBF, 1, id, img.clone()))
            .await
            .unwrap();
        let r = terminal(&h, id).await;
        assert_eq!(r.phase, Phase::Complete, "{r:?}");
        assert_eq!((r.chunks_retransmitted, r.rewinds), (0, 0), "{r:?}");
        let chunks = img.len().div_ceil(MAX_UPDATE_CHUNK_DATA);
        assert_eq!(sp.count(is_chunk), chunks, "every chunk sent once");
        assert_eq!(
            sp.device.lock().unwrap().slot_hash(1),
            Some(sp_sim::expected_slot_hash(&img, 1024 * 1024))
        );
    });
}

#[test]
fn a_lost_prepare_ack_still_delivers_the_update() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, _) = registry(sp.clone(), settings());
        discovered(&h).await;
        sp.net.lock().unwrap().drop_prepare_acks = 1;
        let id = uuid::Uuid::from_u128(0x9abc);
        let img = image(200 * 1024, 5);
        let started = h
            .start_update(bytes("sled-0", HBF, 0, id, img.clone()))
            .await
            .unwrap();
        assert_ne!(started.progress().phase, Phase::Starting);
        let r = terminal(&h, id).await;
        assert_eq!(r.phase, Phase::Complete, "{r:?}");
        assert!(r.hash_verified);
        // The resent prepare met our own update on the SP.
        assert_eq!(sp.count(is_prepare), 2);
    });
}

#[test]
fn a_prepare_never_answered_is_adopted_when_the_sp_holds_it() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, _) = registry(sp.clone(), settings());
        discovered(&h).await;
        let id = uuid::Uuid::from_u128(0xdef0);
        let img = image(100 * 1024, 9);
        let t0 = Instant::now();
        let h2 = h.clone();
        let start =
            actix::spawn(async move { h2.start_update(bytes("sled-0", HBF, 0, id, img)).await });
        // The first prepare reaches the SP, its ack is lost, and then the
        // SP goes silent past the prepare's whole patience (10 s).
        sp.net.lock().unwrap().drop_prepare_acks = 1;
        while sp.count(is_prepare) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sp.net.lock().unwrap().silent = true;
        while t0.elapsed() < Duration::from_secs(11) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sp.net.lock().unwrap().silent = false;
        // The status it asks then shows our update: it goes on.
        start.await.unwrap().unwrap();
        assert!(sp.count(is_prepare) > 1);
        let r = terminal(&h, id).await;
        assert_eq!(r.phase, Phase::Complete, "{r:?}");
    });
}

#[test]
fn concurrent_starts_of_one_id_make_one_update() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, _) = registry(sp.clone(), settings());
        discovered(&h).await;
        let img = image(70 * 1024, 11);
        let other = image(70 * 1024, 13);
        for i in 0..100u128 {
            let id = uuid::Uuid::from_u128(0x1000 + i);
            let prepares = sp.count(is_prepare);
            let starts: Vec<_> = (0..3)
                .map(|_| {
                    let (h, img) = (h.clone(), img.clone());
                    actix::spawn(
                        async move { h.start_update(bytes("sled-0", HBF, 1, id, img)).await },
                    )
                })
                .collect();
            // Once it is bound, the same id for another image is a
            // conflict.
            while h.update(id).await.is_err() {
                tokio::task::yield_now().await;
            }
            let conflict = h
                .start_update(bytes("sled-0", HBF, 1, id, other.clone()))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    conflict,
                    RegistryError::Update(UpdateError::Conflict { .. })
                ),
                "{conflict}"
            );
            for s in starts {
                assert_eq!(s.await.unwrap().unwrap().id(), id);
            }
            assert_eq!(sp.count(is_prepare), prepares + 1, "one prepare per id");
            assert_eq!(terminal(&h, id).await.phase, Phase::Complete);
            // Still the same update once it has ended.
            let again = h
                .start_update(bytes("sled-0", HBF, 1, id, img.clone()))
                .await;
            assert_eq!(again.unwrap().progress().phase, Phase::Complete);
            assert_eq!(sp.count(is_prepare), prepares + 1);
        }
    });
}

#[test]
fn a_failed_update_started_again_with_its_id_is_reported_failed() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, _) = registry(sp.clone(), settings());
        discovered(&h).await;
        // The SP forgets the update halfway (a reset between two chunks).
        let id = uuid::Uuid::from_u128(0x4242);
        let img = image(900 * 1024, 17);
        h.start_update(bytes("sled-0", HBF, 0, id, img.clone()))
            .await
            .unwrap();
        let mut rx = h.update(id).await.unwrap().watch();
        rx.wait_for(|r| r.bytes_acked > 300 * 1024).await.unwrap();
        sp.device.lock().unwrap().reboot(Instant::now(), false);
        let failed = terminal(&h, id).await;
        assert_eq!(failed.phase, Phase::Failed, "{failed:?}");
        let prepares = sp.count(is_prepare);
        let again = h
            .start_update(bytes("sled-0", HBF, 0, id, img))
            .await
            .unwrap()
            .progress();
        assert_eq!(again.phase, Phase::Failed);
        let reason = |p: &Progress| p.failure.as_ref().map(|f| f.reason.clone());
        assert_eq!(reason(&again), reason(&failed));
        assert_eq!(sp.count(is_prepare), prepares, "nothing sent");
    });
}

#[test]
fn a_removed_sp_actor_stops_closes_its_socket_and_sends_nothing_more() {
    run(async {
        let sp = MemSp::new(Net::default());
        let (h, open) = registry(sp.clone(), settings());
        discovered(&h).await;
        let sled = h.sp("sled-0").await.unwrap();
        // Replaced by another SP (a reload leaving none is refused).
        let other = SpEntry::new("sled-9", SpTarget::Addr("[::1]:9".parse().unwrap()));
        h.reconfigure(vec![other]).await.unwrap();
        while sled.is_running() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!open.load(Ordering::SeqCst), "its transport was dropped");
        let sent = sp.sent.lock().unwrap().len();
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(sp.sent.lock().unwrap().len(), sent);
        let e = sled.rpc(MgsRequest::GetPowerState).await.unwrap_err();
        assert!(matches!(e, RpcError::Stopped { .. }), "{e}");
        assert!(matches!(
            h.info("sled-0").await.unwrap_err(),
            RegistryError::UnknownSp(_)
        ));
        // Added back: a new actor, a new socket.
        h.reconfigure(vec![entry()]).await.unwrap();
        assert!(open.load(Ordering::SeqCst));
        discovered(&h).await;
    });
}

#[test]
fn finished_updates_are_remembered_up_to_the_history_limit() {
    run(async {
        let sp = MemSp::new(Net::default());
        let mut cfg = RegistryConfig::new(vec![entry()], settings());
        cfg.history = 2;
        let port = sp.clone();
        cfg.transport = Arc::new(move |_| {
            let port = Port {
                sp: port.clone(),
                open: Arc::new(AtomicBool::new(true)),
            };
            Ok(Arc::new(port) as Arc<dyn Transport>)
        });
        let h = RegistryHandle::start(cfg).unwrap();
        discovered(&h).await;
        let ids: Vec<_> = (0..3u128)
            .map(|i| uuid::Uuid::from_u128(0x7000 + i))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            h.start_update(bytes("sled-0", HBF, 0, *id, image(70 * 1024, 3 + i as u32)))
                .await
                .unwrap();
            assert_eq!(terminal(&h, *id).await.phase, Phase::Complete);
        }
        // The oldest is forgotten: unknown, and its id free for anything.
        let e = h.update(ids[0]).await.unwrap_err();
        assert!(
            matches!(e, RegistryError::UnknownUpdate(id) if id == ids[0]),
            "{e}"
        );
        for id in &ids[1..] {
            assert_eq!(
                h.update(*id).await.unwrap().progress().phase,
                Phase::Complete
            );
        }
        h.start_update(bytes("sled-0", HBF, 1, ids[0], image(70 * 1024, 99)))
            .await
            .unwrap();
        assert_eq!(terminal(&h, ids[0]).await.phase, Phase::Complete);
    });
}
