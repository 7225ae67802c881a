//! The state directory's rules, on real files in temporary directories.

use super::*;
use crate::image::ImageStore;
use crate::record::{Phase, Progress, UpdateRow, UpdateSpec};
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mgsd-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn record(n: u128, phase: Phase) -> UpdateRow {
    let spec = UpdateSpec {
        id: uuid::Uuid::from_u128(n),
        sp: "sled-0".into(),
        sp_serial: None,
        component: gateway_messages::SpComponent::HOST_CPU_BOOT_FLASH,
        slot: 1,
        image: ImageHash([0xab; 32]),
        total_bytes: 1000,
        aux: None,
        artifact: None,
        activate: None,
        started_unix_ms: crate::types::unix_ms(),
        took_over: None,
    };
    let mut p = Progress::new(tokio::time::Instant::now());
    p.phase = phase;
    p.bytes_acked = 500;
    UpdateRow::of(&spec, &p)
}

#[test]
fn records_round_trip_and_bad_rows_are_reported_not_dropped() {
    let dir = tmp("round");
    let (store, problem) = Store::open(&dir).unwrap();
    assert!(problem.is_none());
    store.put(&record(1, Phase::Delivering)).unwrap();
    let mut r = record(2, Phase::Complete);
    r.finished_unix_ms = Some(r.started_unix_ms + 10);
    store.put(&r).unwrap();
    store
        .conn
        .execute(
            "INSERT INTO updates VALUES ('x', 'sp', 'c', 'h', 'p', 0, NULL, '{oops')",
            [],
        )
        .unwrap();
    drop(store);
    let (store, _) = Store::open(&dir).unwrap();
    let (records, bad) = store.load().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].bytes_acked, 500);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("record x does not parse"), "{bad:?}");
    store.remove(&[uuid::Uuid::from_u128(1)]).unwrap();
    assert_eq!(store.load().unwrap().0.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_database_is_moved_aside_and_a_new_one_started() {
    let dir = tmp("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mgsd.db"),
        b"this is no database at all, not even close",
    )
    .unwrap();
    let (store, problem) = Store::open(&dir).unwrap();
    let problem = problem.unwrap();
    assert!(
        problem.contains("mgsd.db") && problem.contains("moved it aside"),
        "{problem}"
    );
    store.put(&record(3, Phase::Preparing)).unwrap();
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"this is no database at all, not even close"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_spool_keeps_verifies_and_prunes_images() {
    let dir = tmp("spool");
    let spool = Spool::open(&dir).unwrap();
    let images = ImageStore::default();
    let a = images.insert(vec![1; 5000]);
    let b = images.insert(vec![2; 7000]);
    // Many starts of one new image at once: one file, no clash.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| spool.put(&a).unwrap());
        }
    });
    spool.put(&b).unwrap();
    let (ha, hb) = (a.hash, b.hash);
    drop((a, b));
    let fresh = ImageStore::default();
    assert_eq!(
        spool.get(&ha, 5000, &fresh).unwrap().in_memory().unwrap(),
        &vec![1; 5000][..]
    );
    // A file whose content is not its name is moved aside.
    std::fs::write(spool.path(&hb), [9u8; 7000]).unwrap();
    let e = spool.get(&hb, 7000, &fresh).unwrap_err();
    assert!(matches!(e, StoreError::SpoolMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&hb.to_string()), "{e}");
    assert!(matches!(
        spool.get(&hb, 7000, &fresh).unwrap_err(),
        StoreError::SpoolMissing { .. }
    ));
    let removed = spool.retain(&HashSet::new()).unwrap();
    assert_eq!(removed, [spool.path(&ha)]);
    let left: Vec<_> = std::fs::read_dir(dir.join("images")).unwrap().collect();
    assert_eq!(left.len(), 1, "the corrupt file stays, aside");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn files_are_the_daemons_alone_whatever_the_umask() {
    let dir = tmp("modes");
    let (store, _) = Store::open(&dir).unwrap();
    store.put(&record(5, Phase::Delivering)).unwrap();
    let spool = Spool::open(&dir).unwrap();
    let images = ImageStore::default();
    let image = images.insert(vec![7; 100]);
    spool.put(&image).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("images")), 0o700);
    assert_eq!(mode(&dir.join("mgsd.db")), 0o600);
    assert_eq!(mode(&spool.path(&image.hash)), 0o600);
    // A state directory others may write is refused, named.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Store::open(&dir).err().unwrap();
    assert!(matches!(e, StoreError::Unsafe { .. }), "{e}");
    assert!(e.to_string().contains("0777"), "{e}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_name_planted_in_the_spool_is_never_written_through() {
    let dir = tmp("planted");
    let spool = Spool::open(&dir).unwrap();
    let images = ImageStore::default();
    let image = images.insert(vec![3; 4096]);
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // The temporary name this process would use.
    let tmp_name = dir
        .join("images")
        .join(format!(".{}.tmp-{}", image.hash, std::process::id()));
    std::os::unix::fs::symlink(&victim, &tmp_name).unwrap();
    assert!(spool.put(&image).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // A failed write leaves no temporary file; the planted link goes with
    // it, and the next write succeeds.
    assert!(std::fs::symlink_metadata(&tmp_name).is_err());
    spool.put(&image).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spool_files_that_are_no_plain_images_are_moved_aside_without_blocking() {
    let dir = tmp("odd");
    let spool = Spool::open(&dir).unwrap();
    let images = ImageStore::default();
    let a = images.insert(vec![1; 1000]);
    let b = images.insert(vec![2; 1000]);
    let (ha, hb) = (a.hash, b.hash);
    drop((a, b));
    // A FIFO in place of one: opening it must not block.
    assert!(std::process::Command::new("mkfifo")
        .arg(spool.path(&ha))
        .status()
        .unwrap()
        .success());
    let e = spool.get(&ha, 1000, &images).unwrap_err();
    assert!(matches!(e, StoreError::SpoolBad { .. }), "{e}");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    // A link to /dev/zero: never followed, never read without bound.
    std::os::unix::fs::symlink("/dev/zero", spool.path(&hb)).unwrap();
    let e = spool.get(&hb, 1000, &images).unwrap_err();
    assert!(matches!(e, StoreError::SpoolBad { .. }), "{e}");
    for h in [ha, hb] {
        assert!(
            std::fs::symlink_metadata(spool.path(&h)).is_err(),
            "moved aside"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_copy_is_written_again_and_leftovers_go_at_open() {
    let dir = tmp("damaged");
    let spool = Spool::open(&dir).unwrap();
    let images = ImageStore::default();
    let image = images.insert(vec![5; 2000]);
    spool.put(&image).unwrap();
    // Same length, other bytes: put rewrites it.
    std::fs::write(spool.path(&image.hash), [6u8; 2000]).unwrap();
    spool.put(&image).unwrap();
    assert_eq!(
        std::fs::read(spool.path(&image.hash)).unwrap(),
        vec![5; 2000]
    );
    let leftover = dir.join("images").join(".abc.tmp-1");
    std::fs::write(&leftover, b"half").unwrap();
    Spool::open(&dir).unwrap();
    assert!(std::fs::symlink_metadata(&leftover).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refusals_never_evict_operate_entries() {
    let dir = tmp("audit");
    let (store, _) = Store::open(&dir).unwrap();
    let operate = AuditEntry {
        time_unix_ms: 1,
        command: "update_start".into(),
        result: "ok".into(),
        ..AuditEntry::default()
    };
    store.audit(&operate).unwrap();
    for i in 0..(REFUSALS_KEEP + 50) as u64 {
        let refusal = AuditEntry {
            time_unix_ms: 2 + i,
            command: "connect".into(),
            result: "permission_denied".into(),
            count: Some(1000),
            ..AuditEntry::default()
        };
        store.audit(&refusal).unwrap();
    }
    store.prune_audit(0).unwrap();
    let all = store.audit_log(0, 100_000).unwrap();
    assert_eq!(all.len() as i64, REFUSALS_KEEP + 1);
    assert!(all.iter().any(|e| e.command == "update_start"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_upload_is_kept_in_its_file_and_reads_as_the_same_image() {
    use std::io::Write;
    let dir = tmp("upload");
    let spool = Spool::open(&dir).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut file = scratch(&dir, "1");
    file.write_all(&data).unwrap();
    let images = ImageStore::default();
    let kept = images.keep_file(file, 1 << 20).unwrap();
    assert!(kept.in_memory().is_none(), "read from its file");
    let same = ImageStore::default().insert(data.clone());
    assert_eq!(kept.hash, same.hash);
    assert_eq!(kept.len(), data.len());
    let mut buf = Vec::new();
    assert_eq!(kept.slice(1000..2024, &mut buf).unwrap(), &data[1000..2024]);
    assert!(
        kept.slice(299_000..300_001, &mut buf).is_err(),
        "past the end"
    );
    assert_eq!(
        kept.host_flash_slot_hash(1 << 20),
        same.host_flash_slot_hash(1 << 20)
    );
    // Spooled from the file, and checked against it at the next put.
    spool.put(&kept).unwrap();
    assert_eq!(std::fs::read(spool.path(&kept.hash)).unwrap(), data);
    spool.put(&kept).unwrap();
    // The same bytes uploaded again are the image already held.
    let mut again = scratch(&dir, "2");
    again.write_all(&data).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &images.keep_file(again, 1 << 20).unwrap(),
        &kept
    ));
    let big = scratch(&dir, "3");
    big.set_len(2 << 20).unwrap();
    assert!(matches!(
        images.keep_file(big, 1 << 20),
        Err(crate::image::LoadError::TooLarge { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A new file for reading and writing in `dir`.
fn scratch(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join(name))
        .unwrap()
}
