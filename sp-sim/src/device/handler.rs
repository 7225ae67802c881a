//! [`SpHandler`] for [`Device`]: each request mapped onto the device model.

use super::{padded, Caboose, Device, LedState, SpKind, Timings, Watchdog};
use crate::flash::HashCache;
use gateway_messages::sp_impl::details::ComponentDetail;
use gateway_messages::sp_impl::{PowerStateTransition, ResetOutcome, SpHandler};
use gateway_messages::{
    CfpaPage, ComponentAction, ComponentActionResponse, ComponentUpdatePrepare, DiscoverResponse,
    DumpSegment, Fwid, HfError, IgnitionCommand, IgnitionState, IpccKeyLookupValueError,
    LedComponentAction, LinkEvents, MgsError, MgsResponse, PowerState, RotBootInfo, RotRequest,
    RotResponse, RotStateV3, SensorRequest, SensorResponse, SpComponent, SpError, SpPort,
    SpStateV2, SpUpdatePrepare, StartupOptions, TransceiverSelect, UpdateChunk, UpdateId,
    UpdateStatus, WatchdogError, HF_PAGE_SIZE, ROT_PAGE_SIZE,
};
use sha2::{Digest, Sha256};
use tokio::time::Duration;

/// IPCC key of the installinator image id (the only key the SP stores).
pub const IPCC_INSTALLINATOR_IMAGE_ID: u8 = 1;
/// Longest installinator image id the SP stores.
pub const MAX_INSTALLINATOR_IMAGE_ID_LEN: usize = 512;

impl Device {
    fn sled_only(&self) -> Result<(), SpError> {
        if self.kind == SpKind::Sled {
            Ok(())
        } else {
            Err(SpError::RequestUnsupportedForSp)
        }
    }

    fn console_peer(&mut self) -> Result<(std::net::SocketAddr, tokio::time::Instant), SpError> {
        let peer = self.peer.ok_or(SpError::SerialConsoleNotAttached)?;
        Ok((peer, self.now))
    }

    fn controller(&mut self) -> Result<&mut crate::ignition::IgnitionController, SpError> {
        self.ignition
            .as_mut()
            .ok_or(SpError::RequestUnsupportedForSp)
    }
}

impl SpHandler for Device {
    fn discover(&mut self) -> Result<DiscoverResponse, SpError> {
        Ok(DiscoverResponse {
            sp_port: SpPort::One,
        })
    }

    fn sp_state(&mut self) -> Result<SpStateV2, SpError> {
        let archive = self.reported_archive_id();
        let mac = Sha256::digest(self.serial.as_bytes());
        Ok(SpStateV2 {
            hubris_archive_id: archive,
            serial_number: padded(&self.serial),
            model: padded(self.kind.model()),
            revision: self.revision,
            base_mac_address: [0xa8, 0x40, 0x25, mac[0], mac[1], mac[2] & 0xf8],
            power_state: self.power,
            rot: Ok(self.rot_state()),
        })
    }

    fn versioned_rot_boot_info(&mut self, version: u8) -> Result<RotBootInfo, SpError> {
        let v2 = self.rot_state();
        if version < 3 {
            return Ok(RotBootInfo::V2(v2));
        }
        let fwid = |n: &str| Fwid::Sha3_256(self.rot_digest(n));
        Ok(RotBootInfo::V3(RotStateV3 {
            active: v2.active,
            persistent_boot_preference: v2.persistent_boot_preference,
            pending_persistent_boot_preference: None,
            transient_boot_preference: v2.transient_boot_preference,
            slot_a_fwid: fwid("a"),
            slot_b_fwid: fwid("b"),
            stage0_fwid: fwid("stage0"),
            stage0next_fwid: fwid("stage0next"),
            slot_a_status: Ok(()),
            slot_b_status: Ok(()),
            stage0_status: Ok(()),
            stage0next_status: Ok(()),
        }))
    }

    fn component_watchdog_supported(&mut self, component: SpComponent) -> Result<(), SpError> {
        match component {
            SpComponent::SP_ITSELF if self.watchdog_supported => Ok(()),
            SpComponent::SP_ITSELF => Err(SpError::RequestUnsupportedForSp),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn reset_component_trigger_with_watchdog(
        &mut self,
        component: SpComponent,
        time_ms: u32,
    ) -> Result<ResetOutcome, SpError> {
        self.component_watchdog_supported(component)?;
        // The prepare is checked first, as for a plain trigger: a retried
        // trigger after the reboot must say "without prepare".
        if self.reset_prepared != Some(component) {
            self.reset_prepared = None;
            return Err(SpError::ResetComponentTriggerWithoutPrepare);
        }
        if !matches!(self.updates.sp, crate::update::State::Complete(_)) {
            self.reset_prepared = None;
            return Err(SpError::Watchdog(WatchdogError::NoCompletedUpdate));
        }
        self.watchdog = Some(Watchdog {
            expires: self.now + Duration::from_millis(u64::from(time_ms)),
            fallback: self.sp_bank,
        });
        self.reset_component_trigger(component)
    }

    /// The running image keeps its bank: the watchdog is disarmed (an ack
    /// also when none is armed, so a resent disable is harmless).
    fn disable_component_watchdog(&mut self, component: SpComponent) -> Result<(), SpError> {
        self.component_watchdog_supported(component)?;
        self.watchdog = None;
        self.disabled_watchdog = true;
        Ok(())
    }

    fn get_power_state(&mut self) -> Result<PowerState, SpError> {
        Ok(self.power)
    }

    fn set_power_state(&mut self, state: PowerState) -> Result<PowerStateTransition, SpError> {
        match state {
            PowerState::A1 => Err(SpError::PowerStateError(1)),
            s if s == self.power => Ok(PowerStateTransition::Unchanged),
            s => {
                self.power = s;
                let now = self.now;
                self.host_power_changed(now);
                Ok(PowerStateTransition::Changed)
            }
        }
    }

    fn sp_update_prepare(&mut self, req: SpUpdatePrepare) -> Result<(), SpError> {
        self.updates.sp_prepare(req, self.now)?;
        // The SP erases the other bank before it acks.
        self.busy += Timings::ms(self.timings.sp_bank_erase_ms);
        self.accepted_prepare = true;
        Ok(())
    }

    fn component_update_prepare(&mut self, req: ComponentUpdatePrepare) -> Result<(), SpError> {
        self.updates
            .component_prepare(req, self.flash.as_mut(), self.now)?;
        self.accepted_prepare = true;
        Ok(())
    }

    fn update_chunk(&mut self, chunk: UpdateChunk, data: &[u8]) -> Result<(), SpError> {
        self.updates
            .chunk(chunk, data, self.flash.as_mut(), self.now)?;
        let status = self
            .updates
            .status(chunk.component, self.flash.as_mut(), self.now);
        self.completed_update = status == Ok(UpdateStatus::Complete(chunk.id));
        if chunk.component == SpComponent::SP_ITSELF && self.completed_update {
            // The new image boots from the other bank at the next reset;
            // until then it is slot 1, whose caboose is now the image's.
            let other = 1 - self.sp_bank;
            self.sp_pending_bank = other;
            if let Some(image) = self.updates.take_completed_sp_image() {
                self.sp_archive[usize::from(other)].copy_from_slice(&Sha256::digest(&image)[..8]);
                let new = Caboose::of_sp_image(&image).unwrap_or(Caboose {
                    entries: Vec::new(),
                });
                if let Some(cab) = self.sp_caboose_mut(other) {
                    *cab = new;
                }
            }
        }
        self.busy += self.write_time(data.len());
        Ok(())
    }

    fn update_status(&mut self, component: SpComponent) -> Result<UpdateStatus, SpError> {
        self.updates
            .status(component, self.flash.as_mut(), self.now)
    }

    fn update_abort(&mut self, component: SpComponent, id: UpdateId) -> Result<(), SpError> {
        self.updates
            .abort(component, id, self.flash.as_mut(), self.now)
    }

    fn reset_component_prepare(&mut self, component: SpComponent) -> Result<(), SpError> {
        self.reset_prepared = Some(component);
        self.reset_prepare_seen = true;
        Ok(())
    }

    fn reset_component_trigger(&mut self, component: SpComponent) -> Result<ResetOutcome, SpError> {
        if self.reset_prepared.take() != Some(component) {
            return Err(SpError::ResetComponentTriggerWithoutPrepare);
        }
        match component {
            SpComponent::SP_ITSELF => {
                self.rebooting = true;
                Ok(ResetOutcome::Rebooting)
            }
            SpComponent::ROT => {
                self.rot_active = self.rot_transient.take().unwrap_or(self.rot_persistent);
                Ok(ResetOutcome::Acked)
            }
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn component_get_active_slot(&mut self, component: SpComponent) -> Result<u16, SpError> {
        match component {
            SpComponent::SP_ITSELF => Ok(self.sp_pending_bank),
            SpComponent::HOST_CPU_BOOT_FLASH => Ok(self.flash_mut()?.active),
            SpComponent::ROT => Ok(self.rot_active as u16),
            SpComponent::STAGE0 => Ok(0),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn component_get_persistent_slot(&mut self, component: SpComponent) -> Result<u16, SpError> {
        match component {
            SpComponent::SP_ITSELF => Ok(self.sp_pending_bank),
            SpComponent::HOST_CPU_BOOT_FLASH => Ok(self.flash_mut()?.persistent),
            SpComponent::ROT => Ok(self.rot_persistent as u16),
            SpComponent::STAGE0 => Ok(0),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn component_set_active_slot(
        &mut self,
        component: SpComponent,
        slot: u16,
        persist: bool,
    ) -> Result<(), SpError> {
        match component {
            SpComponent::SP_ITSELF if !persist => Err(SpError::RequestUnsupportedForComponent),
            SpComponent::SP_ITSELF => {
                if slot > 1 {
                    return Err(SpError::UpdateFailed(1));
                }
                self.sp_pending_bank = slot;
                Ok(())
            }
            SpComponent::HOST_CPU_BOOT_FLASH => {
                let slot = Self::hf_slot(slot)?;
                let f = self.flash_mut()?;
                if !f.muxed_to_sp {
                    return Err(SpError::UpdateSlotBusy);
                }
                f.active = slot;
                if persist {
                    f.persistent = slot;
                }
                // A mux switch invalidates both cached hashes.
                f.invalidate(0);
                f.invalidate(1);
                Ok(())
            }
            SpComponent::ROT => {
                let s = Self::rot_slot(slot)?;
                if persist {
                    self.rot_persistent = s;
                } else {
                    self.rot_transient = Some(s);
                }
                Ok(())
            }
            SpComponent::STAGE0 => Self::rot_slot(slot).map(|_| ()),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn read_caboose(
        &mut self,
        component: SpComponent,
        slot: u16,
        key: [u8; 4],
        out: &mut [u8],
    ) -> Result<usize, SpError> {
        let slot = match component {
            // Slot 0 is the running bank, 1 the other one.
            SpComponent::SP_ITSELF => match slot {
                0 => self.sp_bank,
                1 => 1 - self.sp_bank,
                _ => return Err(SpError::InvalidSlotForComponent),
            },
            SpComponent::ROT | SpComponent::STAGE0 if slot <= 1 => slot,
            SpComponent::ROT | SpComponent::STAGE0 => return Err(SpError::InvalidSlotForComponent),
            _ => return Err(SpError::RequestUnsupportedForComponent),
        };
        let caboose = self
            .cabooses
            .iter()
            .find(|(c, s, _)| *c == component && *s == slot)
            .map(|(_, _, cab)| cab)
            .ok_or(SpError::NoCaboose)?;
        let value = caboose
            .get(key)
            .ok_or(SpError::NoSuchCabooseKey(key))?
            .as_deref()
            .ok_or(SpError::BadCabooseChecksum)?;
        if value.len() > out.len() {
            return Err(SpError::CabooseValueOverflow(value.len() as u32));
        }
        out[..value.len()].copy_from_slice(value);
        Ok(value.len())
    }

    fn read_host_flash(
        &mut self,
        slot: u16,
        addr: u32,
        out: &mut [u8; HF_PAGE_SIZE],
    ) -> Result<(), SpError> {
        let slot = Self::hf_slot(slot)?;
        let f = self.flash_mut()?;
        if addr
            .checked_add(HF_PAGE_SIZE as u32)
            .is_none_or(|end| end > f.capacity)
        {
            return Err(SpError::Hf(HfError::BadAddress));
        }
        // Without a store directory written data is not kept.
        f.read_page(slot, addr, out)
            .map_err(|_| SpError::RequestUnsupportedForComponent)
    }

    fn start_host_flash_hash(&mut self, slot: u16) -> Result<(), SpError> {
        let slot = Self::hf_slot(slot)?;
        let now = self.now;
        let f = self.flash_mut()?;
        if !f.muxed_to_sp {
            return Err(SpError::Hf(HfError::NotMuxedToSp));
        }
        f.poll_hash(now);
        if f.hashing() {
            return Err(SpError::Hf(HfError::HashInProgress));
        }
        let s = &mut f.slots[usize::from(slot)];
        if !matches!(s.cache, HashCache::Valid(_)) {
            s.cache = HashCache::InProgress(now + f.hash_time);
            f.poll_hash(now);
        }
        Ok(())
    }

    fn get_host_flash_hash(&mut self, slot: u16) -> Result<[u8; 32], SpError> {
        let slot = Self::hf_slot(slot)?;
        let now = self.now;
        let quirk = self.quirks.hash_written_bytes;
        let f = self.flash_mut()?;
        f.poll_hash(now);
        let written = f.slots[usize::from(slot)].written_hash;
        match f.slots[usize::from(slot)].cache {
            HashCache::Valid(_) if quirk && written.is_some() => Ok(written.unwrap_or_default()),
            HashCache::Valid(h) => Ok(h),
            HashCache::Uncalculated => Err(SpError::Hf(HfError::HashUncalculated)),
            HashCache::Recalculate => Err(SpError::Hf(HfError::RecalculateHash)),
            HashCache::InProgress(_) => Err(SpError::Hf(HfError::HashInProgress)),
        }
    }

    fn current_time(&mut self) -> Result<u64, SpError> {
        Ok(self.now.saturating_duration_since(self.booted).as_millis() as u64)
    }

    fn mgs_response(&mut self, response: MgsResponse, trailing: &[u8]) {
        let port = self.port_of(self.peer);
        let now = self.now;
        let Some(p) = self.phase2.as_mut() else {
            return;
        };
        match response {
            MgsResponse::HostPhase2Data { hash, offset } => {
                p.data(port, hash, offset, trailing, now)
            }
            MgsResponse::Error(
                e @ (MgsError::HostPhase2Unavailable { .. }
                | MgsError::HostPhase2ImageBadOffset { .. }
                | MgsError::BadRequest(_)),
            ) => p.error(e),
        }
    }

    fn num_devices(&mut self) -> u32 {
        self.inventory.num_devices()
    }

    fn device_description(&mut self, index: u32) -> gateway_messages::tlv::DeviceDescription<'_> {
        let a0 = self.host_on();
        self.inventory.description(index, a0)
    }

    fn num_ignition_ports(&mut self) -> Result<u32, SpError> {
        self.controller()?;
        Ok(crate::ignition::IGNITION_PORTS)
    }

    fn ignition_state(&mut self, target: u8) -> Result<IgnitionState, SpError> {
        self.controller()?.state(target)
    }

    fn bulk_ignition_state(&mut self, index: u32) -> IgnitionState {
        let state = u8::try_from(index)
            .ok()
            .and_then(|t| self.ignition.as_ref()?.state(t).ok());
        state.unwrap_or_else(crate::ignition::absent_state)
    }

    fn ignition_link_events(&mut self, target: u8) -> Result<LinkEvents, SpError> {
        self.controller()?.link_events(target)
    }

    fn bulk_ignition_link_events(&mut self, index: u32) -> LinkEvents {
        let events = u8::try_from(index)
            .ok()
            .and_then(|t| self.ignition.as_ref()?.link_events(t).ok());
        events.unwrap_or_else(crate::ignition::no_events)
    }

    fn clear_ignition_link_events(
        &mut self,
        target: Option<u8>,
        transceiver: Option<TransceiverSelect>,
    ) -> Result<(), SpError> {
        self.controller()?.clear_link_events(target, transceiver)
    }

    fn ignition_command(&mut self, target: u8, command: IgnitionCommand) -> Result<(), SpError> {
        self.controller()?.command(target, command)
    }

    fn serial_console_attach(&mut self, component: SpComponent) -> Result<(), SpError> {
        self.sled_only()?;
        let (peer, now) = self.console_peer()?;
        let c = self
            .console
            .as_mut()
            .ok_or(SpError::RequestUnsupportedForSp)?;
        c.attach(peer, component, now)
    }

    fn serial_console_write(&mut self, offset: u64, data: &[u8]) -> Result<u64, SpError> {
        self.sled_only()?;
        let (peer, now) = self.console_peer()?;
        let c = self
            .console
            .as_mut()
            .ok_or(SpError::RequestUnsupportedForSp)?;
        c.write(peer, offset, data, now)
    }

    fn serial_console_detach(&mut self) -> Result<(), SpError> {
        self.sled_only()?;
        if let Some(c) = self.console.as_mut() {
            c.detach();
        }
        Ok(())
    }

    fn serial_console_keepalive(&mut self) -> Result<(), SpError> {
        self.sled_only()?;
        let (peer, now) = self.console_peer()?;
        let c = self
            .console
            .as_mut()
            .ok_or(SpError::RequestUnsupportedForSp)?;
        c.keepalive(peer, now)
    }

    fn serial_console_break(&mut self) -> Result<(), SpError> {
        self.sled_only()?;
        let (peer, now) = self.console_peer()?;
        let c = self
            .console
            .as_mut()
            .ok_or(SpError::RequestUnsupportedForSp)?;
        c.send_break(peer, now)
    }

    fn num_component_details(&mut self, component: SpComponent) -> Result<u32, SpError> {
        self.inventory.num_details(component)
    }

    fn component_detail(&mut self, component: SpComponent, index: u32) -> ComponentDetail<'_> {
        let ms = self.uptime_ms(self.now);
        let a0 = self.host_on();
        self.inventory
            .detail(component, index, ms, a0, self.off_since_ms)
    }

    fn component_clear_status(&mut self, component: SpComponent) -> Result<(), SpError> {
        let ms = self.uptime_ms(self.now);
        self.inventory.clear_status(component, ms)
    }

    fn component_action(
        &mut self,
        component: SpComponent,
        action: ComponentAction,
    ) -> Result<ComponentActionResponse, SpError> {
        match (component, action) {
            (SpComponent::SYSTEM_LED, ComponentAction::Led(led)) => {
                self.led = match led {
                    LedComponentAction::TurnOn => LedState::On,
                    LedComponentAction::TurnOff => LedState::Off,
                    LedComponentAction::Blink => LedState::Blink,
                };
                Ok(ComponentActionResponse::Ack)
            }
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn read_sensor(&mut self, request: SensorRequest) -> Result<SensorResponse, SpError> {
        let ms = self.uptime_ms(self.now);
        let a0 = self.host_on();
        self.inventory.read(request, ms, a0, self.off_since_ms)
    }

    fn task_dump_count(&mut self) -> Result<u32, SpError> {
        Ok(self.dumps.count())
    }

    fn task_dump_read_start(
        &mut self,
        index: u32,
        key: [u8; 16],
    ) -> Result<(u16, u64, u8), SpError> {
        self.dumps.read_start(index, key)
    }

    fn task_dump_read_continue(
        &mut self,
        seq: u32,
        key: [u8; 16],
        out: &mut [u8],
    ) -> Result<Option<DumpSegment>, SpError> {
        self.dumps.read_continue(seq, key, out)
    }

    fn send_host_nmi(&mut self) -> Result<(), SpError> {
        self.sled_only()?;
        self.nmi_count += 1;
        if let Some(c) = self
            .console
            .as_mut()
            .filter(|_| self.power == PowerState::A0)
        {
            c.host_print(b"\r\nNMI received: entering kmdb (not really)\r\n");
        }
        Ok(())
    }

    fn set_ipcc_key_lookup_value(&mut self, key: u8, value: &[u8]) -> Result<(), SpError> {
        self.sled_only()?;
        if key != IPCC_INSTALLINATOR_IMAGE_ID {
            return Err(SpError::SetIpccKeyLookupValueFailed(
                IpccKeyLookupValueError::InvalidKey,
            ));
        }
        if value.len() > MAX_INSTALLINATOR_IMAGE_ID_LEN {
            return Err(SpError::SetIpccKeyLookupValueFailed(
                IpccKeyLookupValueError::ValueTooLong {
                    max_len: MAX_INSTALLINATOR_IMAGE_ID_LEN as u16,
                },
            ));
        }
        self.installinator_image_id = value.to_vec();
        Ok(())
    }

    fn read_rot(
        &mut self,
        request: RotRequest,
        page: &mut [u8; ROT_PAGE_SIZE],
    ) -> Result<RotResponse, SpError> {
        let name = match request {
            RotRequest::ReadCmpa => "cmpa",
            RotRequest::ReadCfpa(CfpaPage::Active) => "cfpa-active",
            RotRequest::ReadCfpa(CfpaPage::Inactive) => "cfpa-inactive",
            RotRequest::ReadCfpa(CfpaPage::Scratch) => "cfpa-scratch",
        };
        *page = self.rot_page(name);
        Ok(RotResponse::Ok)
    }

    fn get_startup_options(&mut self) -> Result<StartupOptions, SpError> {
        self.sled_only()?;
        Ok(StartupOptions(self.startup_options))
    }

    fn set_startup_options(&mut self, options: StartupOptions) -> Result<(), SpError> {
        self.sled_only()?;
        self.startup_options = options.0;
        Ok(())
    }
}
