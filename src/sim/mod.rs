//! The simulated world of `sim` mode: one state model per device kind (hypervisor manager,
//! switch, BMC, AV server), the fault plan that decides how each call fails, and the recorder
//! that turns every call and device-truth change into the run's history.
//!
//! Layout (`ARCHITECTURE.md`, "Wire mode in one page"):
//! - `hypervisor`, `switch`, `bmc`: plain state machines, no clock, no faults;
//! - `plan`: the scenario's `[[faults]]` at run time and the one decision every call takes;
//! - `world`: [`SimWorld`], the models behind one lock and the call protocol ([`SimWorld::call`]:
//!   invoke, fault decision, latency, effect, return) that every face goes through;
//! - `face`: the in-process face (adapter traits on the tokio clock);
//! - `control`: heals, scheduled switch reboots, final device truth and measurements;
//! - `avserver`: AV-server delivery faults (`drop`, `duplicate`, `reorder`);
//! - `recorder`: the shared history;
//! - `rng`: the run's seeded generator, split per purpose (latency jitter, fault probabilities,
//!   AV delivery delays, the order of one instant's notifications).
//!
//! Everything is deterministic: no wall clock, no thread RNG, every random draw from the run's
//! seed, ordered maps wherever iteration order reaches the history (INV-11).

mod avserver;
mod bmc;
mod control;
pub mod crash;
pub mod face;
pub mod faults;
mod hypervisor;
mod index;
mod plan;
pub mod recorder;
pub mod rng;
mod switch;
pub mod wire;
pub mod world;

pub use avserver::{DeliveryHit, DEFAULT_REORDER_HOLD, DELIVERY_STEP};
pub use crash::{CallFate, CrashPoint, CrashTrap};
pub use face::{SimBmc, SimHypervisor, SimMailer, SimSwitch, SimSyslog};
pub use faults::{CallKind, FaultEffect, FaultMatch, FaultSpec};
pub use index::DeviceOp;
pub use plan::{DEFAULT_DELAY, DEFAULT_HANG};
pub use recorder::Recorder;
pub use world::{Reply, SimWorld, WireCall};
