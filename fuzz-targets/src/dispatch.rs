//! `sp_dispatch`: request datagrams through the SP-side dispatcher
//! (`gateway_messages::sp_impl::handle_request`) into sp-sim's device
//! model, the handler the simulator serves, as its server loop drives it:
//! time passes between datagrams, resets keep the SP silent, ignition can
//! cut its power, and the SP sends packets of its own (console output,
//! phase-2 requests).
//!
//! Input: one byte choosing the board (sled, switch, power shelf), then
//! records `[control] [length: u16 le] [datagram]` (a short last record
//! takes what is left). The control byte's low three bits choose how long
//! passes before the datagram arrives, bit 3 which of two gateways sends
//! it, bit 4 powers the SP back on first (as the other switch would).
//!
//! Every reply must decode as a response with the current version and the
//! request's message id, and every packet the SP sends on its own must
//! decode as an SP request.

use gateway_messages::sp_impl::handle_request;
use gateway_messages::{
    decode, decode_header, version, MessageKind, SpResponse, SystemType, MAX_SERIALIZED_SIZE,
};
use sp_sim::device::{Device, DeviceConfig};
use sp_sim::ignition::{IgnitionController, TargetPower, IGNITION_PORTS, OWN_SWITCH_TARGET};
use sp_sim::{SpKind, Timings};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// The simulator's receive buffer: longer datagrams arrive cut to it.
const RECV_BUF: usize = 2048;

/// Datagrams in one input, at most (the rest is ignored).
const MAX_REQUESTS: usize = 64;

/// Time before a datagram, by the control byte's low three bits.
const STEPS_MS: [u64; 8] = [0, 1, 10, 100, 1_000, 10_000, 30_000, 120_000];

/// Run the datagrams in `data` against a freshly booted simulated SP.
pub fn sp_dispatch(data: &[u8]) {
    crate::alloc_limit::bounded(|| {
        let Some((&board, mut rest)) = data.split_first() else {
            return;
        };
        let mut sp = Sp::new(board);
        for _ in 0..MAX_REQUESTS {
            let Some((&control, after)) = rest.split_first() else {
                break;
            };
            let (len, after) = match after {
                [a, b, tail @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), tail),
                _ => (after.len(), &[][..]),
            };
            let (datagram, after) = after.split_at(len.min(after.len()));
            rest = after;
            sp.receive(control, &datagram[..datagram.len().min(RECV_BUF)]);
        }
    })
}

/// One simulated SP and what its server loop keeps beside it.
struct Sp {
    device: Device,
    /// Its own power, as ignition gives it.
    power: Arc<TargetPower>,
    /// Silent (resetting) until then.
    down_until: Option<Instant>,
    now: Instant,
    gateways: [SocketAddr; 2],
}

impl Sp {
    fn new(board: u8) -> Self {
        let kind = [SpKind::Sled, SpKind::Switch, SpKind::PowerShelf][usize::from(board % 3)];
        let mut timings = Timings::instant();
        // Updates complete by hashing the whole slot: keep it small.
        timings.host_flash_mib = 1;
        timings.reset_ms = 2_000;
        timings.console_line_ms = 1_000;
        let now = Instant::now();
        let mut device = Device::new(
            DeviceConfig {
                kind,
                serial: format!("FUZZ{board:02x}"),
                revision: 2,
                timings,
                store_dir: None,
                watchdog: kind.watchdog(),
            },
            now,
        );
        let power = Arc::new(TargetPower::default());
        if kind == SpKind::Switch {
            // A few occupied ports, the switch itself among them.
            let mut targets: Vec<(u8, Arc<TargetPower>, SystemType)> = (0..4)
                .map(|t| (t, Arc::new(TargetPower::default()), SystemType::Gimlet))
                .collect();
            targets.push((OWN_SWITCH_TARGET, power.clone(), SystemType::Sidecar));
            device.ignition = Some(IgnitionController::new(targets, 2));
        }
        Self {
            device,
            power,
            down_until: None,
            now,
            gateways: [
                "[::1]:22222".parse().expect("address"),
                "[::1]:22223".parse().expect("address"),
            ],
        }
    }

    /// One datagram arrives, as the server loop handles it.
    fn receive(&mut self, control: u8, request: &[u8]) {
        self.now += Duration::from_millis(STEPS_MS[usize::from(control & 7)]);
        let from = self.gateways[usize::from(control >> 3 & 1)];
        if control & 0x10 != 0 {
            self.power.set(true);
        }
        if self.power.take_boot() {
            let silent = self.device.power_on_boot(self.now);
            self.down_until = Some(self.now + silent);
        }
        if !self.power.is_on() || self.down_until.is_some_and(|t| self.now < t) {
            return;
        }
        if let Some(back) = self.device.poll_watchdog(self.now) {
            self.down_until = Some(back);
            if self.now < back {
                return;
            }
        }
        let dev = &mut self.device;
        dev.now = self.now;
        dev.peer = Some(from);
        dev.last_mgs = Some(from);
        dev.busy = Duration::ZERO;
        dev.rebooting = false;
        dev.completed_update = false;
        dev.accepted_prepare = false;
        dev.disabled_watchdog = false;
        dev.reset_prepare_seen = false;
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let reply = handle_request(request, dev, &mut out);
        if let Some(n) = reply {
            check_reply(request, &out[..n]);
        }
        if dev.rebooting {
            let silent = dev.reboot(self.now, false);
            self.down_until = Some(self.now + silent);
            return;
        }
        self.now += dev.busy;
        self.send_own();
    }

    /// What the SP sends on its own, as the server loop takes it (a batch
    /// of at most 16 per turn).
    fn send_own(&mut self) {
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        for _ in 0..16 {
            let Some((n, _to)) = self.device.poll_outgoing(self.now, &mut out) else {
                return;
            };
            let (message, _) = decode(&out[..n]).expect("an SP-initiated packet decodes");
            assert!(
                matches!(message.kind, MessageKind::SpRequest(_)),
                "an SP-initiated packet is an SP request: {message:?}"
            );
            assert_eq!(message.header.version, version::CURRENT);
        }
        let _ = self.device.next_wake();
    }
}

/// A reply decodes as a response to `request`.
fn check_reply(request: &[u8], reply: &[u8]) {
    assert!(reply.len() <= MAX_SERIALIZED_SIZE);
    let (message, trailing) =
        decode(reply).unwrap_or_else(|e| panic!("reply {reply:02x?} does not decode: {e}"));
    assert_eq!(
        message.header.version,
        version::CURRENT,
        "replies are current"
    );
    let expected_id = decode_header(request).map_or(u32::MAX, |h| h.message_id);
    assert_eq!(
        message.header.message_id, expected_id,
        "replies echo the id"
    );
    let MessageKind::SpResponse(response) = message.kind else {
        panic!("a reply is an SP response: {message:?}");
    };
    let carries_data = matches!(
        response,
        SpResponse::CabooseValue
            | SpResponse::ReadHostFlash
            | SpResponse::ReadRot(_)
            | SpResponse::Inventory(_)
            | SpResponse::ComponentDetails(_)
            | SpResponse::BulkIgnitionState(_)
            | SpResponse::BulkIgnitionLinkEvents(_)
            | SpResponse::Dump(_)
    );
    assert!(
        carries_data || trailing.is_empty(),
        "{response:?} carries no trailing data, got {} bytes",
        trailing.len()
    );
    if let SpResponse::BulkIgnitionState(page) | SpResponse::BulkIgnitionLinkEvents(page) = response
    {
        assert!(page.total <= IGNITION_PORTS && page.offset <= page.total);
    }
    // And the MGS side takes it as what it is.
    crate::wire::wire_decode(reply);
}
