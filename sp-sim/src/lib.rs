//! Simulated service processors and racks.
//!
//! Each simulated SP has its own UDP socket and behaves like the real SP
//! firmware as `../shared/protocol.md` describes it: the update rules and
//! errors, erase and write timing, a receive queue of 3 datagrams, an SP
//! reset that forgets all update state and stays silent for a while.
//! Decoding and framing are `gateway-messages`' pure dispatcher; the server
//! loop only moves bytes. Faults are injected from a seed.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let rack = sp_sim::SimRack::start(sp_sim::RackConfig::standard(2, 1, 1)).await?;
//! println!("sled-0 listens on {}", rack.sps[0].addr);
//! rack.stop().await;
//! # Ok(()) }
//! ```

pub mod client;
pub mod console;
pub mod device;
pub mod dumps;
pub mod faults;
pub mod flash;
mod handles;
pub mod ignition;
pub mod inventory;
pub mod rack;
pub mod recovery;
pub mod server;
pub mod update;

/// The artifacts crate, so users of the simulator can build the valid
/// images it now insists on (`sp_sim::artifacts::build::sp_image`).
pub use artifacts;
pub use console::ConsoleStats;
pub use device::{LedState, SpKind, Timings};
pub use faults::{FaultConfig, FaultStats};
pub use flash::expected_slot_hash;
pub use inventory::{SensorFailure, SensorFault};
pub use rack::{RackConfig, SimRack, SimSp, SpConfig};
pub use recovery::{build_image as build_phase2_image, Phase2Failure, Phase2Progress, Phase2State};
