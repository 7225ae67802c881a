//! The blocking pipelined [`ChunkStreamer`] against a simulated SP over
//! loopback.

use gateway_messages::{SpComponent, UpdateId, UpdateStatus, MAX_UPDATE_CHUNK_DATA};
use sp_sim::client::ChunkStreamer;
use sp_sim::{RackConfig, SimRack, Timings};

const MIB: usize = 1024 * 1024;
const HBF: SpComponent = SpComponent::HOST_CPU_BOOT_FLASH;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_host_flash_update_with_three_chunks_in_flight_lands_intact() {
    let mut config = RackConfig::standard(1, 0, 0);
    // A small device keeps the SP's hash of the unwritten rest quick.
    config.timings = Timings {
        host_flash_mib: 2,
        ..Timings::instant()
    };
    let rack = SimRack::start(config).await.unwrap();
    let sp = rack.sps[0].clone();
    // Sector 0 is reserved for the SP and must stay erased.
    let mut image = vec![0xFF; MIB];
    for (i, b) in image.iter_mut().enumerate().skip(64 * 1024) {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    let id = UpdateId([0x5A; 16]);

    let (run, image) = tokio::task::spawn_blocking(move || {
        let mut streamer = ChunkStreamer::new(sp.addr).unwrap();
        let run = streamer.update(HBF, 1, id, &image, 3).unwrap();
        (run, image)
    })
    .await
    .unwrap();

    let sp = &rack.sps[0];
    assert_eq!(sp.update_status(HBF), Ok(UpdateStatus::Complete(id)));
    assert_eq!(
        sp.slot_hash(1),
        Some(sp_sim::expected_slot_hash(&image, 2 * MIB as u32))
    );
    assert!(
        run.chunks >= MIB.div_ceil(MAX_UPDATE_CHUNK_DATA) as u64,
        "{run:?}"
    );
    rack.stop().await;
}
