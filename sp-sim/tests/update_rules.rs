//! Every rule and error of the SP update state machines (spec §8.6),
//! driven directly: no sockets, synthetic time.

use gateway_messages::{
    ComponentUpdatePrepare as Prep, SpComponent as C, SpError as E, SpUpdatePrepare, UpdateChunk,
    UpdateId, UpdateInProgressStatus, UpdatePreparationProgress, UpdatePreparationStatus,
    UpdateStatus as S,
};
use sp_sim::artifacts::build::{aux_flash, rot_image, rot_image_for_slot, sp_image};
use sp_sim::artifacts::image::{HEADER_MAGIC, LEGACY_HEADER_MAGIC};
use sp_sim::artifacts::Tag;
use sp_sim::flash::HostFlash;
use sp_sim::update::{UpdateLimits, Updates, HF_SECTOR0_IS_RESERVED};
use sp_sim::update::{
    AUX_SLOT_SECTORS, SP_AUX_CHCK_MISMATCH, SP_IMAGE_BOARD_MISMATCH, SP_IMAGE_BOARD_UNKNOWN,
};
use tokio::time::{Duration, Instant};

const A: UpdateId = UpdateId([0xa; 16]);
const B: UpdateId = UpdateId([0xb; 16]);
const MIB: u32 = 1024 * 1024;

struct Sp {
    u: Updates,
    f: HostFlash,
    t0: Instant,
}

impl Sp {
    fn new() -> Self {
        Self::with_aux(0)
    }
    fn with_aux(aux_flash_slots: u32) -> Self {
        let limits = UpdateLimits {
            sector_erase: Duration::from_millis(1),
            sp_image_capacity: 2 * MIB,
            rot_slot_capacity: 256 * 1024,
            has_host_flash: true,
            aux_flash_slots,
        };
        Self {
            u: Updates::new(limits),
            f: HostFlash::new(MIB, "test", None),
            t0: Instant::now(),
        }
    }
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
    fn prep(&mut self, c: C, id: UpdateId, slot: u16, size: u32, ms: u64) -> Result<(), E> {
        let now = self.at(ms);
        self.u.component_prepare(
            Prep {
                component: c,
                id,
                slot,
                total_size: size,
            },
            Some(&mut self.f),
            now,
        )
    }
    fn sp_prep(&mut self, id: UpdateId, size: u32) -> Result<(), E> {
        let p = SpUpdatePrepare {
            id,
            aux_flash_size: 0,
            aux_flash_chck: [0; 32],
            sp_image_size: size,
        };
        let now = self.at(0);
        self.u.sp_prepare(p, now)
    }
    fn chunk(&mut self, c: C, id: UpdateId, offset: u32, data: &[u8], ms: u64) -> Result<(), E> {
        let now = self.at(ms);
        self.u.chunk(
            UpdateChunk {
                component: c,
                id,
                offset,
            },
            data,
            Some(&mut self.f),
            now,
        )
    }
    fn status(&mut self, c: C, ms: u64) -> Result<S, E> {
        let now = self.at(ms);
        self.u.status(c, Some(&mut self.f), now)
    }
    fn abort(&mut self, c: C, id: UpdateId, ms: u64) -> Result<(), E> {
        let now = self.at(ms);
        self.u.abort(c, id, Some(&mut self.f), now)
    }
}

fn in_progress(id: UpdateId, bytes_received: u32, total_size: u32) -> S {
    S::InProgress(UpdateInProgressStatus {
        id,
        bytes_received,
        total_size,
    })
}

fn preparing(id: UpdateId, current: u32, total: u32) -> S {
    S::Preparing(UpdatePreparationStatus {
        id,
        progress: Some(UpdatePreparationProgress { current, total }),
    })
}

const FF: [u8; 978] = [0xFF; 978];

fn ff(n: usize) -> Vec<u8> {
    vec![0xFF; n]
}
const HBF: C = C::HOST_CPU_BOOT_FLASH;

#[test]
fn nothing_prepared_reports_none_and_refuses_chunks_and_aborts() {
    let mut sp = Sp::new();
    for c in [C::SP_ITSELF, HBF, C::ROT, C::STAGE0] {
        assert_eq!(sp.status(c, 0), Ok(S::None));
        assert_eq!(sp.chunk(c, A, 0, &FF, 0), Err(E::UpdateNotPrepared));
        assert_eq!(sp.abort(c, A, 0), Err(E::UpdateNotPrepared));
    }
    for c in [C::SP_AUX_FLASH, C::MONORAIL, C::SYSTEM_LED] {
        assert_eq!(
            sp.status(c, 0),
            Err(E::RequestUnsupportedForComponent),
            "{c}"
        );
    }
}

#[test]
fn host_flash_erases_sectors_one_to_n_minus_one_with_progress() {
    let mut sp = Sp::new(); // 1 MiB = 16 sectors, 1 ms each
    sp.prep(HBF, A, 1, 100_000, 0).unwrap();
    assert_eq!(sp.status(HBF, 0), Ok(preparing(A, 1, 16)));
    assert_eq!(sp.status(HBF, 5), Ok(preparing(A, 6, 16)));
    // Chunks before the erase finishes are refused.
    assert_eq!(sp.chunk(HBF, A, 0, &FF, 5), Err(E::UpdateNotPrepared));
    // A second prepare while erasing is refused with the status.
    assert_eq!(
        sp.prep(HBF, B, 0, 10, 7),
        Err(E::UpdateInProgress(preparing(A, 8, 16)))
    );
    assert_eq!(sp.status(HBF, 15), Ok(in_progress(A, 0, 100_000)));
}

#[test]
fn host_flash_prepare_validation_in_spec_order() {
    let mut sp = Sp::new();
    assert_eq!(sp.prep(HBF, A, 2, 10, 0), Err(E::InvalidSlotForComponent));
    assert_eq!(sp.prep(HBF, A, 0, MIB + 1, 0), Err(E::UpdateIsTooLarge));
    sp.f.muxed_to_sp = false;
    assert_eq!(sp.prep(HBF, A, 0, 10, 0), Err(E::UpdateSlotBusy));
    sp.f.muxed_to_sp = true;
    assert_eq!(sp.prep(HBF, A, 0, MIB, 0), Ok(()));
}

#[test]
fn one_shared_buffer_for_all_updaters() {
    let mut sp = Sp::new();
    sp.prep(HBF, A, 0, 2000, 0).unwrap();
    assert_eq!(
        sp.prep(C::ROT, B, 0, 10, 0),
        Err(E::OtherComponentUpdateInProgress(HBF))
    );
    assert_eq!(
        sp.sp_prep(B, 10),
        Err(E::OtherComponentUpdateInProgress(HBF))
    );
    // Own state is checked before the buffer.
    assert_eq!(
        sp.prep(HBF, B, 0, 10, 0).unwrap_err(),
        E::UpdateInProgress(preparing(A, 1, 16))
    );
    // Completing releases the buffer.
    sp.chunk(HBF, A, 0, &FF, 20).unwrap();
    sp.chunk(HBF, A, 978, &ff(1022), 20).unwrap();
    assert_eq!(sp.status(HBF, 20), Ok(S::Complete(A)));
    assert_eq!(sp.prep(C::ROT, B, 0, 10, 20), Ok(()));
    assert_eq!(
        sp.prep(HBF, B, 0, 10, 20),
        Err(E::OtherComponentUpdateInProgress(C::ROT))
    );
}

#[test]
fn chunks_only_at_the_exact_next_offset_and_within_the_total() {
    let mut sp = Sp::new();
    sp.prep(HBF, A, 0, 2000, 0).unwrap();
    assert_eq!(sp.chunk(HBF, A, 978, &FF, 20), Err(E::InvalidUpdateChunk));
    sp.chunk(HBF, A, 0, &FF, 20).unwrap();
    // A resent chunk (its ack was lost) is refused; state unchanged.
    assert_eq!(sp.chunk(HBF, A, 0, &FF, 20), Err(E::InvalidUpdateChunk));
    assert_eq!(
        sp.chunk(HBF, A, 978, &ff(1023), 20),
        Err(E::InvalidUpdateChunk),
        "past total"
    );
    assert_eq!(sp.status(HBF, 20), Ok(in_progress(A, 978, 2000)));
    // Wrong id.
    assert_eq!(
        sp.chunk(HBF, B, 978, &ff(10), 20),
        Err(E::InvalidUpdateId { sp_update_id: A })
    );
    // Reaching the total completes implicitly; later chunks are refused.
    sp.chunk(HBF, A, 978, &ff(1022), 20).unwrap();
    assert_eq!(sp.status(HBF, 20), Ok(S::Complete(A)));
    assert_eq!(sp.chunk(HBF, A, 2000, &[], 20), Err(E::UpdateNotPrepared));
    assert_eq!(
        sp.chunk(HBF, A, 978, &ff(1022), 20),
        Err(E::UpdateNotPrepared)
    );
}

#[test]
fn host_flash_sector_zero_must_be_erased() {
    let mut sp = Sp::new();
    sp.prep(HBF, A, 0, 70_000, 0).unwrap();
    sp.chunk(HBF, A, 0, &FF, 20).unwrap();
    let mut bad = FF;
    bad[5] = 0;
    let code = HF_SECTOR0_IS_RESERVED;
    assert_eq!(sp.chunk(HBF, A, 978, &bad, 20), Err(E::UpdateFailed(code)));
    assert_eq!(sp.status(HBF, 20), Ok(S::Failed { id: A, code }));
    assert_eq!(sp.chunk(HBF, A, 978, &FF, 20), Err(E::UpdateFailed(code)));
    // A failed update can be aborted (with its id) and a new one prepared.
    assert_eq!(
        sp.abort(HBF, B, 20),
        Err(E::UpdateInProgress(S::Failed { id: A, code }))
    );
    assert_eq!(sp.abort(HBF, A, 20), Ok(()));
    assert_eq!(sp.status(HBF, 20), Ok(S::Aborted(A)));
    // Past sector 0 anything goes.
    sp.prep(HBF, B, 0, 65_536 + 3, 20).unwrap();
    let mut off = 0;
    while off < 65_536 {
        let n = (65_536 - off).min(978);
        sp.chunk(HBF, B, off, &ff(n as usize), 40).unwrap();
        off += n;
    }
    sp.chunk(HBF, B, off, &[1, 2, 3], 40).unwrap();
    assert_eq!(sp.status(HBF, 40), Ok(S::Complete(B)));
}

#[test]
fn abort_rules_in_every_state() {
    let mut sp = Sp::new();
    sp.prep(HBF, A, 0, 2000, 0).unwrap();
    // Wrong id: refused with the current status, nothing changes.
    assert_eq!(
        sp.abort(HBF, B, 0),
        Err(E::UpdateInProgress(preparing(A, 1, 16)))
    );
    // Erasing: aborts.
    assert_eq!(sp.abort(HBF, A, 0), Ok(()));
    assert_eq!(sp.status(HBF, 0), Ok(S::Aborted(A)));
    // Already aborted: idempotent.
    assert_eq!(sp.abort(HBF, A, 0), Ok(()));
    // Accepting: aborts.
    sp.prep(HBF, B, 0, 2000, 0).unwrap();
    sp.chunk(HBF, B, 0, &FF, 20).unwrap();
    assert_eq!(sp.abort(HBF, B, 20), Ok(()));
    assert_eq!(sp.chunk(HBF, B, 978, &FF, 20), Err(E::UpdateNotPrepared));
    // Complete: cannot be aborted.
    sp.prep(HBF, A, 0, 978, 20).unwrap();
    sp.chunk(HBF, A, 0, &FF, 40).unwrap();
    assert_eq!(
        sp.abort(HBF, A, 40),
        Err(E::UpdateInProgress(S::Complete(A)))
    );
}

#[test]
fn sp_image_rules() {
    let mut sp = Sp::new();
    let with_aux = SpUpdatePrepare {
        id: A,
        aux_flash_size: 1,
        aux_flash_chck: [0; 32],
        sp_image_size: 10,
    };
    assert_eq!(
        sp.u.sp_prepare(with_aux, sp.t0),
        Err(E::RequestUnsupportedForSp)
    );
    assert_eq!(sp.sp_prep(A, 2 * MIB + 1), Err(E::UpdateIsTooLarge));
    // The SP image is not a ComponentUpdatePrepare target.
    assert_eq!(
        sp.prep(C::SP_ITSELF, A, 0, 10, 0),
        Err(E::RequestUnsupportedForComponent)
    );
    let image = sp_image("gimlet-c", 1000, "1.0.0");
    sp.sp_prep(A, 1000).unwrap();
    // No preparing phase: InProgress with 0 bytes right away.
    assert_eq!(sp.status(C::SP_ITSELF, 0), Ok(in_progress(A, 0, 1000)));
    // The SP updater checks the id before anything else.
    assert_eq!(
        sp.chunk(C::SP_ITSELF, B, 5, &FF, 0),
        Err(E::InvalidUpdateId { sp_update_id: A })
    );
    assert_eq!(
        sp.chunk(C::SP_AUX_FLASH, A, 0, &FF, 0),
        Err(E::InvalidUpdateChunk)
    );
    sp.chunk(C::SP_ITSELF, A, 0, &image, 0).unwrap();
    assert_eq!(sp.status(C::SP_ITSELF, 0), Ok(S::Complete(A)));
    assert_eq!(sp.u.take_completed_sp_image(), Some(image));
    // A complete SP update blocks the next prepare until reset or abort.
    assert_eq!(sp.sp_prep(B, 10), Err(E::UpdateInProgress(S::Complete(A))));
    assert_eq!(
        sp.chunk(C::SP_ITSELF, B, 0, &FF, 0),
        Err(E::InvalidUpdateId { sp_update_id: A })
    );
    assert_eq!(
        sp.chunk(C::SP_ITSELF, A, 1000, &FF, 0),
        Err(E::UpdateNotPrepared)
    );
    sp.u.reboot(Some(&mut sp.f));
    assert_eq!(sp.sp_prep(B, 10), Ok(()));
    sp.sp_prep(B, 10).unwrap_err();
    sp.abort(C::SP_ITSELF, B, 0).unwrap();
    assert_eq!(
        sp.sp_prep(A, 10),
        Ok(()),
        "aborted SP update does not block"
    );
}

#[test]
fn rot_and_stage0_share_one_updater() {
    let mut sp = Sp::new();
    assert_eq!(
        sp.prep(C::ROT, A, 2, 10, 0),
        Err(E::InvalidSlotForComponent)
    );
    assert_eq!(
        sp.prep(C::STAGE0, A, 0, 10, 0),
        Err(E::InvalidSlotForComponent)
    );
    assert_eq!(
        sp.prep(C::ROT, A, 0, 256 * 1024 + 1, 0),
        Err(E::UpdateIsTooLarge)
    );
    sp.prep(C::STAGE0, A, 1, 500, 0).unwrap();
    assert_eq!(sp.status(C::ROT, 0), Ok(in_progress(A, 0, 500)));
    assert_eq!(
        sp.prep(C::ROT, B, 0, 10, 0),
        Err(E::UpdateInProgress(in_progress(A, 0, 500)))
    );
    // Stage0 images need no header.
    sp.chunk(C::STAGE0, A, 0, &ff(500), 0).unwrap();
    assert_eq!(sp.status(C::STAGE0, 0), Ok(S::Complete(A)));
    // Only accepting blocks a new RoT prepare.
    assert_eq!(sp.prep(C::ROT, B, 1, 10, 0), Ok(()));
}

#[test]
fn reboot_forgets_everything() {
    let mut sp = Sp::new();
    sp.prep(HBF, A, 0, 5000, 0).unwrap();
    sp.chunk(HBF, A, 0, &FF, 20).unwrap();
    sp.u.reboot(Some(&mut sp.f));
    assert_eq!(sp.status(HBF, 20), Ok(S::None));
    assert_eq!(sp.chunk(HBF, A, 978, &FF, 20), Err(E::UpdateNotPrepared));
    assert_eq!(sp.abort(HBF, A, 20), Err(E::UpdateNotPrepared));
}

#[test]
fn completed_host_flash_slot_hash_covers_the_whole_device() {
    let mut sp = Sp::new();
    let mut image = vec![0xFF; 65_536];
    image.extend((0..50_000u32).map(|i| (i * 7) as u8));
    sp.prep(HBF, A, 1, image.len() as u32, 0).unwrap();
    for (i, c) in image.chunks(978).enumerate() {
        sp.chunk(HBF, A, (i * 978) as u32, c, 20).unwrap();
    }
    assert_eq!(sp.status(HBF, 20), Ok(S::Complete(A)));
    assert_eq!(
        sp.f.slots[1].content_hash,
        sp_sim::expected_slot_hash(&image, MIB)
    );
    assert_ne!(sp.f.slots[0].content_hash, sp.f.slots[1].content_hash);
}

fn sp_prep_aux(sp: &mut Sp, id: UpdateId, aux: &[u8], sp_size: u32, ms: u64) -> Result<(), E> {
    let chck = sp_sim::artifacts::AuxFlash::parse(aux.to_vec())
        .map(|a| a.chck())
        .unwrap_or([0x55; 32]);
    let p = SpUpdatePrepare {
        id,
        aux_flash_size: aux.len() as u32,
        aux_flash_chck: chck,
        sp_image_size: sp_size,
    };
    let now = sp.at(ms);
    sp.u.sp_prepare(p, now)
}

fn send(sp: &mut Sp, c: C, id: UpdateId, data: &[u8], ms: u64) -> Result<(), E> {
    for (i, d) in data.chunks(978).enumerate() {
        sp.chunk(c, id, (i * 978) as u32, d, ms)?;
    }
    Ok(())
}

fn chck_scan(id: UpdateId, found_match: bool, total_size: u32) -> S {
    S::SpUpdateAuxFlashChckScan {
        id,
        found_match,
        total_size,
    }
}

#[test]
fn sp_image_with_aux_flash_is_written_then_found_again() {
    let mut sp = Sp::with_aux(16);
    let aux = aux_flash(&[(Tag(*b"QSFP"), &[7; 5000])]);
    let img = sp_image("sidecar-c", 20_000, "1.0.1");
    let (a, n) = (aux.len() as u32, img.len() as u32);
    assert_eq!(
        sp.u.sp_prepare(
            SpUpdatePrepare {
                id: A,
                aux_flash_size: 2 * MIB + 1,
                aux_flash_chck: [0; 32],
                sp_image_size: 10,
            },
            sp.t0
        ),
        Err(E::UpdateIsTooLarge)
    );
    sp_prep_aux(&mut sp, A, &aux, n, 0).unwrap();
    // No slot matches: one 2 MiB slot is erased (1 ms per sector).
    assert_eq!(
        sp.status(C::SP_ITSELF, 0),
        Ok(preparing(A, 0, AUX_SLOT_SECTORS))
    );
    assert_eq!(
        sp.status(C::SP_ITSELF, 10),
        Ok(preparing(A, 10, AUX_SLOT_SECTORS))
    );
    assert_eq!(
        sp.chunk(C::SP_AUX_FLASH, A, 0, &aux, 10),
        Err(E::UpdateNotPrepared)
    );
    let ms = u64::from(AUX_SLOT_SECTORS);
    assert_eq!(sp.status(C::SP_ITSELF, ms), Ok(chck_scan(A, false, a + n)));
    // The aux image comes first, as sp-aux-flash.
    assert_eq!(
        sp.chunk(C::SP_ITSELF, A, 0, &img[..978], ms),
        Err(E::InvalidUpdateChunk)
    );
    assert_eq!(sp.status(C::SP_ITSELF, ms), Ok(chck_scan(A, false, a + n)));
    sp.chunk(C::SP_AUX_FLASH, A, 0, &aux[..978], ms).unwrap();
    assert_eq!(sp.status(C::SP_ITSELF, ms), Ok(in_progress(A, 978, a + n)));
    assert_eq!(
        sp.chunk(C::SP_AUX_FLASH, A, 100, &aux[..10], ms),
        Err(E::InvalidUpdateChunk)
    );
    send(&mut sp, C::SP_AUX_FLASH, A, &aux, ms).unwrap_err(); // first chunk again
    let rest = &aux[978..];
    for (i, d) in rest.chunks(978).enumerate() {
        sp.chunk(C::SP_AUX_FLASH, A, (978 + i * 978) as u32, d, ms)
            .unwrap();
    }
    assert_eq!(sp.status(C::SP_ITSELF, ms), Ok(in_progress(A, a, a + n)));
    assert_eq!(sp.u.aux_flash().unwrap().slot(0), &aux[..]);
    // No more aux bytes; the image follows from offset 0.
    assert_eq!(
        sp.chunk(C::SP_AUX_FLASH, A, a, &[0], ms),
        Err(E::InvalidUpdateChunk)
    );
    send(&mut sp, C::SP_ITSELF, A, &img, ms).unwrap();
    assert_eq!(sp.status(C::SP_ITSELF, ms), Ok(S::Complete(A)));
    assert_eq!(sp.u.take_completed_sp_image(), Some(img.clone()));

    // After a reboot the same aux image is found: skipped, no erase.
    sp.u.reboot(Some(&mut sp.f));
    sp_prep_aux(&mut sp, B, &aux, n, ms).unwrap();
    assert_eq!(sp.status(C::SP_ITSELF, ms), Ok(chck_scan(B, true, a + n)));
    assert_eq!(
        sp.chunk(C::SP_AUX_FLASH, B, 0, &aux[..978], ms),
        Err(E::InvalidUpdateChunk)
    );
    sp.chunk(C::SP_ITSELF, B, 0, &img[..978], ms).unwrap();
    assert_eq!(
        sp.status(C::SP_ITSELF, ms),
        Ok(in_progress(B, a + 978, a + n))
    );
    sp.chunk(C::SP_ITSELF, B, 978, &img[978..], ms).unwrap();
    assert_eq!(sp.status(C::SP_ITSELF, ms), Ok(S::Complete(B)));

    // Another aux image goes to the next empty even slot.
    sp.u.reboot(Some(&mut sp.f));
    let other = aux_flash(&[(Tag(*b"QSFP"), &[8; 300])]);
    sp_prep_aux(&mut sp, A, &other, n, 2 * ms).unwrap();
    assert_eq!(
        sp.status(C::SP_ITSELF, 3 * ms),
        Ok(chck_scan(A, false, other.len() as u32 + n))
    );
    send(&mut sp, C::SP_AUX_FLASH, A, &other, 3 * ms).unwrap();
    let chip = sp.u.aux_flash().unwrap();
    assert_eq!((chip.slot(0), chip.slot(2)), (&aux[..], &other[..]));
}

#[test]
fn aux_flash_that_does_not_yield_the_chck_fails_the_update() {
    let mut sp = Sp::with_aux(16);
    let aux = aux_flash(&[(Tag(*b"QSFP"), &[1, 2, 3])]);
    let mut bad = aux.clone();
    bad[60 + 13] ^= 1; // a blob byte: CRCs and CHCK no longer hold
    let chck = sp_sim::artifacts::AuxFlash::parse(aux.clone())
        .unwrap()
        .chck();
    let p = SpUpdatePrepare {
        id: A,
        aux_flash_size: bad.len() as u32,
        aux_flash_chck: chck,
        sp_image_size: 1000,
    };
    sp.u.sp_prepare(p, sp.t0).unwrap();
    let ms = u64::from(AUX_SLOT_SECTORS);
    let code = SP_AUX_CHCK_MISMATCH;
    assert_eq!(
        sp.chunk(C::SP_AUX_FLASH, A, 0, &bad, ms),
        Err(E::UpdateFailed(code))
    );
    assert_eq!(sp.status(C::SP_ITSELF, ms), Ok(S::Failed { id: A, code }));
    assert_eq!(
        sp.chunk(C::SP_ITSELF, A, 0, &FF, ms),
        Err(E::UpdateFailed(code))
    );
    // The written slot is invalid: the next update erases it again.
    sp.abort(C::SP_ITSELF, A, ms).unwrap();
    sp_prep_aux(&mut sp, B, &aux, 1000, ms).unwrap();
    assert_eq!(
        sp.status(C::SP_ITSELF, ms),
        Ok(preparing(B, 0, AUX_SLOT_SECTORS))
    );
    assert!(sp.u.aux_flash().unwrap().slot(0).is_empty());
}

#[test]
fn boards_without_aux_flash_refuse_it() {
    let mut sp = Sp::new();
    let aux = aux_flash(&[(Tag(*b"QSFP"), &[1, 2, 3])]);
    assert_eq!(
        sp_prep_aux(&mut sp, A, &aux, 1000, 0),
        Err(E::RequestUnsupportedForSp)
    );
    assert!(sp.u.aux_flash().is_none());
}

/// Sends `image` as an SP update `id` and returns the final chunk's answer.
fn sp_update(sp: &mut Sp, id: UpdateId, image: &[u8]) -> Result<(), E> {
    sp.sp_prep(id, image.len() as u32).unwrap();
    send(sp, C::SP_ITSELF, id, image, 0)
}

#[test]
fn a_new_sp_image_needs_a_header_and_a_readable_matching_board() {
    let unknown = (SP_IMAGE_BOARD_UNKNOWN, E::ImageBoardUnknown);
    let good = sp_image("gimlet-c", 4096, "2.0.0");
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut img = good.clone();
        f(&mut img);
        img
    };
    let cases: Vec<(&str, Vec<u8>, (u32, E))> = vec![
        ("erased", ff(4096), unknown),
        (
            "legacy magic",
            with(&|i| i[0x298..0x29C].copy_from_slice(&LEGACY_HEADER_MAGIC.to_le_bytes())),
            unknown,
        ),
        (
            "header at 0x130",
            rot_image("gimlet-c", 4096, "2.0.0"),
            unknown,
        ),
        (
            "end past the data",
            with(&|i| i[0x29C..0x2A0].copy_from_slice(&8192u32.to_le_bytes())),
            unknown,
        ),
        (
            "end past the bank",
            with(&|i| i[0x29C..0x2A0].copy_from_slice(&(2 * MIB + 4).to_le_bytes())),
            unknown,
        ),
        ("no caboose", with(&|i| i[4096 - 256..].fill(0xFF)), unknown),
        (
            "bad BORD CRC",
            with(&|i| i[4096 - 256 + 4 + 56 + 12] ^= 1),
            unknown,
        ),
        (
            "no BORD",
            with(&|i| i[4096 - 256 + 4 + 56..4096 - 256 + 4 + 56 + 24].fill(0)),
            unknown,
        ),
        (
            "BORD over 32 bytes",
            sp_image(&"g".repeat(33), 4096, "2.0.0"),
            unknown,
        ),
        (
            "other board",
            sp_image("sidecar-c", 4096, "2.0.0"),
            (SP_IMAGE_BOARD_MISMATCH, E::ImageBoardMismatch),
        ),
        (
            "case differs",
            sp_image("Gimlet-c", 4096, "2.0.0"),
            (SP_IMAGE_BOARD_MISMATCH, E::ImageBoardMismatch),
        ),
    ];
    for (what, image, (code, error)) in cases {
        let mut sp = Sp::new();
        sp.u.set_running_sp_board(Some(b"gimlet-c".to_vec()));
        assert_eq!(sp_update(&mut sp, A, &image), Err(error), "{what}");
        assert_eq!(
            sp.status(C::SP_ITSELF, 0),
            Ok(S::Failed { id: A, code }),
            "{what}"
        );
        assert_eq!(sp.u.take_completed_sp_image(), None, "{what}");
    }
    let mut sp = Sp::new();
    sp.u.set_running_sp_board(Some(b"gimlet-c".to_vec()));
    assert_eq!(sp_update(&mut sp, A, &good), Ok(()));
    assert_eq!(sp.status(C::SP_ITSELF, 0), Ok(S::Complete(A)));
    // A running image without BORD accepts any readable board.
    let mut sp = Sp::new();
    sp.u.set_running_sp_board(None);
    assert_eq!(sp_update(&mut sp, A, &sp_image("psc-c", 4096, "1")), Ok(()));
}

#[test]
fn rot_block_zero_needs_the_header_magic_and_a_reset_vector_in_the_slot() {
    use gateway_messages::{RotError, UpdateError};
    let invalid = E::Update(UpdateError::InvalidHeaderBlock);
    let rot_failed = S::RotError {
        id: A,
        error: RotError::Update(UpdateError::InvalidHeaderBlock),
    };
    let try_rot = |slot: u16, image: &[u8]| {
        let mut sp = Sp::new();
        sp.prep(C::ROT, A, slot, image.len() as u32, 0).unwrap();
        let r = send(&mut sp, C::ROT, A, image, 0);
        (r, sp.status(C::ROT, 0))
    };
    for slot in [0, 1] {
        let good = rot_image_for_slot("oxide-rot-1", 3000, "1.0.0", slot);
        assert_eq!(
            try_rot(slot, &good),
            (Ok(()), Ok(S::Complete(A))),
            "slot {slot}"
        );
        let wrong_slot = rot_image_for_slot("oxide-rot-1", 3000, "1.0.0", 1 - slot);
        assert_eq!(try_rot(slot, &wrong_slot), (Err(invalid), Ok(rot_failed)));
    }
    let good = rot_image("oxide-rot-1", 3000, "1.0.0");
    let mut legacy = good.clone();
    legacy[0x130..0x134].copy_from_slice(&LEGACY_HEADER_MAGIC.to_le_bytes());
    assert_eq!(try_rot(0, &legacy), (Err(invalid), Ok(rot_failed)));
    assert_eq!(
        try_rot(0, &sp_image("oxide-rot-1", 3000, "1")),
        (Err(invalid), Ok(rot_failed))
    );
    assert_eq!(try_rot(0, &good[..0x132]), (Err(invalid), Ok(rot_failed)));
    let mut header_only = ff(600);
    header_only[..8].copy_from_slice(&good[..8]);
    header_only[0x130..0x134].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
    assert_eq!(try_rot(0, &header_only), (Ok(()), Ok(S::Complete(A))));
    // A failed RoT update refuses chunks with the RoT's error.
    let mut sp = Sp::new();
    sp.prep(C::ROT, A, 0, 600, 0).unwrap();
    assert_eq!(send(&mut sp, C::ROT, A, &ff(600), 0), Err(invalid));
    assert_eq!(sp.chunk(C::ROT, A, 0, &FF, 0), Err(invalid));
}
