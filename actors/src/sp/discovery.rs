//! How an SP actor finds its SP and keeps knowing it: discovery (at a
//! fixed address, or by multicast on a switch port's interface, looked up
//! at every tick), identity from `SpState`, firmware versions, and
//! requests parked while an SP behind an interface is looked for again.

use super::{sp_metrics, Reply, RpcKind, SpActor, SpIdentity, SpTarget, Wake};
use crate::error::RpcError;
use gateway_messages::{MgsRequest, SpComponent, SpResponse};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use tokio::time::Instant;
use tracing::{debug, info, warn};

const DISCOVERY_MULTICAST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x1de, 2);

/// The state of an SP's interface, from sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// Up, with this index (the IPv6 scope id).
    Up(u32),
    /// Exists, but down.
    Down(u32),
    /// No such interface.
    Missing,
}

impl Link {
    fn of(name: &str) -> Link {
        let read = |what: &str| {
            if name.contains('/') {
                return None;
            }
            std::fs::read_to_string(format!("/sys/class/net/{name}/{what}"))
                .ok()
                .map(|s| s.trim().to_string())
        };
        let Some(index) = read("ifindex").and_then(|i| i.parse().ok()) else {
            return Link::Missing;
        };
        // A veth whose peer is gone says "lowerlayerdown"; "unknown" is
        // what interfaces without carrier detection say when up.
        match read("operstate").as_deref() {
            Some("up" | "unknown") => Link::Up(index),
            _ => Link::Down(index),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Link::Up(_) => "up",
            Link::Down(_) => "down",
            Link::Missing => "missing",
        }
    }
}

impl SpActor {
    /// Where to send: the discovered SP, the configured address, or (for
    /// a `Discover` to an SP behind an interface) the multicast group.
    pub(super) fn destination(&self, discover: bool) -> Option<SocketAddr> {
        if let Some(peer) = self.peer {
            return Some(peer);
        }
        match &self.target {
            SpTarget::Addr(a) => Some(*a),
            SpTarget::Interface(_) if discover => match self.link {
                Some(Link::Up(scope)) => Some(SocketAddr::V6(SocketAddrV6::new(
                    DISCOVERY_MULTICAST,
                    gateway_messages::SP_PORT,
                    0,
                    scope,
                ))),
                _ => None,
            },
            SpTarget::Interface(_) => None,
        }
    }

    /// The SP answered discovery from `from`: talk to it there only.
    pub(super) fn discovered(&mut self, from: SocketAddr) {
        if self.peer == Some(from) {
            return;
        }
        info!(addr = %from, "SP discovered");
        // A fixed address: connect, so the kernel drops everyone else's
        // datagrams. Behind an interface the SP may come back at another
        // address (a new MAC after a reboot), so the socket stays free to
        // hear a discovery answer from anywhere on the link.
        if matches!(self.target, SpTarget::Addr(_)) {
            if let Err(e) = self.transport.connect(from) {
                warn!(addr = %from, error = %e, "could not connect the SP's socket");
            }
        }
        self.peer = Some(from);
        self.info.send_modify(|i| i.addr = Some(from));
    }

    /// Ask the SP's state, unless a discovery or state request is under
    /// way already.
    pub(super) fn read_state(&mut self) {
        if !self.discovering {
            let _in_span = self.span.clone().entered();
            self.discovering = true;
            self.submit(MgsRequest::SpState, RpcKind::Normal, Reply::State);
        }
    }

    pub(super) fn identified(&mut self, response: &SpResponse) {
        let Some(identity) = SpIdentity::from_state(response) else {
            return;
        };
        if !self.identified {
            self.identified = true;
            debug!(serial = %identity.serial, "SP identified");
            sp_metrics::discovered(self.name.as_str(), self.created.elapsed());
        }
        if let Some(old) = self
            .info
            .borrow()
            .identity
            .as_ref()
            .filter(|o| o.serial != identity.serial)
        {
            warn!(was = %old.serial, now = %identity.serial, addr = ?self.peer, "a different SP answers here now (serial changed); its identity is refreshed");
        }
        let rot_slot = identity.rot_active_slot.unwrap_or(0);
        // A new SP (or the first sight of one): what its update buffer
        // holds, so an update of someone else's (or ours, from before a
        // state loss) is seen without anyone asking.
        let new_sp = self
            .info
            .borrow()
            .identity
            .as_ref()
            .is_none_or(|o| o.serial != identity.serial);
        if new_sp {
            for component in crate::types::UPDATABLE {
                let request = MgsRequest::UpdateStatus(component);
                self.submit(request, RpcKind::Normal, Reply::Background);
            }
        }
        // Versions are read again only when the firmware may have changed.
        let mut same_firmware = false;
        self.info.send_modify(|i| {
            same_firmware = i.identity.as_ref().is_some_and(|old| {
                old.hubris_archive_id == identity.hubris_archive_id
                    && old.rot_active_slot == identity.rot_active_slot
            }) && i.versions.sp.is_some()
                && i.versions.rot.is_some();
            i.identity = Some(identity);
            i.state = Some((Instant::now(), *response));
        });
        if same_firmware {
            return;
        }
        for (component, slot) in [(SpComponent::SP_ITSELF, 0), (SpComponent::ROT, rot_slot)] {
            let request = MgsRequest::ReadComponentCaboose {
                component,
                slot,
                key: *b"VERS",
            };
            self.submit(request, RpcKind::Normal, Reply::Version(component));
        }
    }

    pub(super) fn set_reachable(&mut self, up: bool) {
        self.reachable = up;
        if up {
            // Back (perhaps after a reboot that lost the console's
            // attachment): look at the console now.
            self.deadlines.insert(Instant::now(), Wake::Console);
        }
        sp_metrics::reachable(self.name.as_str(), up);
        let last_heard = self.last_heard;
        self.info.send_modify(|i| {
            i.reachable = up;
            i.last_heard = last_heard;
        });
    }

    /// Whether a request with no address to go to should wait for the SP
    /// to be found again rather than fail: an SP behind an interface,
    /// known before.
    pub(super) fn waits_for_peer(&self, discover: bool) -> bool {
        !discover && self.identified && matches!(self.target, SpTarget::Interface(_))
    }

    /// Hold request `id` until the SP is found again (see `parked`), and
    /// look for it.
    pub(super) fn park(&mut self, id: u32, now: Instant) {
        let rpc = &self.settings.rpc;
        let deadline = now + rpc.per_attempt_timeout * rpc.max_attempts.max(1);
        self.parked.push((deadline, id));
        self.deadlines.insert(deadline, Wake::Parked);
        self.rediscover();
    }

    /// Look for the SP (behind its interface) now, unless already looking
    /// or the interface is not up.
    pub(super) fn rediscover(&mut self) {
        if !self.discovering && matches!(self.link, Some(Link::Up(_))) {
            self.discovering = true;
            let probe = RpcKind::Within(self.settings.discovery_interval);
            self.submit(MgsRequest::Discover, probe, Reply::Discover);
        }
    }

    /// Fail the parked requests that waited a whole patience for their SP
    /// to be found.
    pub(super) fn expire_parked(&mut self, now: Instant) {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(deadline, _)| *deadline <= now);
        self.parked = waiting;
        for (_, id) in due {
            let sp = self.name.clone();
            self.finish(id, Err(RpcError::NotDiscovered { sp }));
        }
    }

    /// Look the SP's interface up again: report a change, and count an SP
    /// whose link is down or missing as unreachable.
    pub(super) fn check_link(&mut self) {
        let SpTarget::Interface(name) = &self.target else {
            return;
        };
        let link = Link::of(name);
        if self.link == Some(link) {
            return;
        }
        match link {
            Link::Up(scope) => info!(interface = %name, scope, "interface up"),
            other => {
                warn!(interface = %name, state = other.as_str(), "interface not up: the SP cannot be reached through it")
            }
        }
        if let Link::Up(index) | Link::Down(index) = link {
            // The interface was made anew (its index changed): whatever is
            // behind it must be found again.
            if self
                .link_index
                .replace(index)
                .is_some_and(|old| old != index)
            {
                self.peer = None;
            }
        }
        self.link = Some(link);
        if self.peer.is_none() && self.identified {
            self.rediscover();
        }
        sp_metrics::link(self.name.as_str(), matches!(link, Link::Up(_)));
        self.info.send_modify(|i| i.link = Some(link.as_str()));
        if !matches!(link, Link::Up(_)) && self.reachable {
            self.set_reachable(false);
        }
    }

    pub(super) fn tick(&mut self, now: Instant) {
        self.deadlines
            .insert(now + self.settings.discovery_interval, Wake::Tick);
        self.check_link();
        self.console_tick(now);
        let last_heard = self.last_heard;
        let srtt = self.rtt.srtt().map(|d| d.as_micros() as u64);
        let rto = self.rtt.rto().as_micros() as u64;
        self.info.send_if_modified(|i| {
            let changed = (i.last_heard, i.srtt_us, i.rto_us) != (last_heard, srtt, rto);
            i.last_heard = last_heard;
            i.srtt_us = srtt;
            i.rto_us = rto;
            changed
        });
        let idle = last_heard.is_none_or(|t| now - t >= self.settings.idle_rediscover);
        let lost = self.peer.is_none() && matches!(self.target, SpTarget::Interface(_));
        if !self.discovering && (!self.reachable || !self.identified || idle || lost) {
            self.discovering = true;
            let probe = RpcKind::Within(self.settings.discovery_interval);
            self.submit(MgsRequest::Discover, probe, Reply::Discover);
        } else if self.reachable {
            let stale = self.info.borrow().state.is_none_or(|(at, _)| {
                now.saturating_duration_since(at) >= self.settings.state_refresh
            });
            if stale {
                self.read_state();
            }
        }
    }
}
