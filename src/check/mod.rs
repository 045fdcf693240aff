//! Invariants (INV-1–INV-10) and expectations: pure functions over a run's history and final
//! device truth, the way an auditor would check them. Never asks the engine anything.

pub mod expect;

pub use expect::{AlertExpect, Expectations, LServerExpect};
