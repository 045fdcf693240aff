//! Plain data: topology, networks, L-Servers, NICs, detections, policy.
//!
//! Nothing here does I/O beyond reading a topology file; the engine, the lab and the daemon all
//! build on these types.

pub mod detection;
pub mod duration;
pub mod generate;
pub mod history;
pub mod load;
pub mod policy;
pub mod site;
pub mod topology;
pub mod validate;

pub use detection::{normalize_mac, Category, Detection};
pub use load::{load_site, load_topology_str, TopologyError};
pub use site::{LServer, Nic, NicLocation, Site};
pub use topology::*;
