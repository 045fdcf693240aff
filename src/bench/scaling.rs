//! The scaling curve: the same outbreak at growing sizes (10,000 to 100,000 L-Servers by
//! default, [`super::workload::SCALING_SCENARIOS`]), each run once in sim mode one after the
//! other in this process, so their wall times compare on the same machine in the same minute.
//!
//! Three figures carry targets: the largest run's wall time, its wall time per L-Server against
//! the smallest run's (linear cost: the work grows with the L-Servers, so should the time), and
//! the worst makespan ratio of any point (contained or confirmed, against its lower bound).
//! Each point drops its history before the next runs: the curve measures one run at a time.

use super::measure;
use super::{BenchError, Figure, Target};
use crate::scenario::load::Scenario;

/// Most the largest point's wall time may be.
pub const LARGEST_WALL_TARGET_MS: f64 = 10_000.0;

/// Most the largest point's wall time per L-Server may exceed the smallest point's.
pub const PER_LSERVER_TARGET: f64 = 1.5;

/// Most either makespan of any point may exceed its lower bound.
pub const MAKESPAN_TARGET: f64 = 1.02;

/// One point of the curve.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePoint {
    /// Scenario name.
    pub name: String,
    /// L-Servers of its site.
    pub lservers: usize,
    /// Wall time of the run, runtime to checker verdict.
    pub wall_ms: f64,
    /// Makespan over its lower bound (last NIC contained).
    pub makespan_ratio: f64,
    /// Confirmed makespan over its bound (last R9 record update).
    pub confirmed_ratio: f64,
    /// L-Servers that did not end quarantined.
    pub not_quarantined: usize,
    /// Whether the scenario passed.
    pub passed: bool,
}

impl ScalePoint {
    /// Wall time per L-Server, in microseconds.
    pub fn us_per_lserver(&self) -> f64 {
        self.wall_ms * 1_000.0 / self.lservers.max(1) as f64
    }
}

/// Runs every scenario once, smallest first, and returns the points and the figures.
pub fn measure(
    scenarios: &[Scenario],
    progress: &dyn Fn(&str),
) -> Result<(Vec<ScalePoint>, Vec<Figure>), BenchError> {
    let mut points = Vec::new();
    for scenario in scenarios {
        progress(&format!("scaling: {}", scenario.name));
        let timed = measure::outbreak(scenario).map_err(BenchError::Failed)?;
        let m = &timed.run.check.measures;
        let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        let not_quarantined = timed
            .run
            .record
            .lservers
            .iter()
            .filter(|l| l.state != "quarantined")
            .count();
        points.push(ScalePoint {
            name: scenario.name.clone(),
            lservers: timed.run.record.lservers.len(),
            wall_ms: timed.elapsed.as_secs_f64() * 1_000.0,
            makespan_ratio: ratio(m.makespan_ms, m.lower_bound_ms),
            confirmed_ratio: ratio(m.confirmed_makespan_ms, m.confirmed_lower_bound_ms),
            not_quarantined,
            passed: timed.run.passed,
        });
    }
    points.sort_by_key(|p| p.lservers);
    let figures = figures(&points);
    Ok((points, figures))
}

/// The three figures with targets, from the points (sorted by size).
fn figures(points: &[ScalePoint]) -> Vec<Figure> {
    let (Some(smallest), Some(largest)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let worst = points
        .iter()
        .map(|p| (p.makespan_ratio.max(p.confirmed_ratio), p))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let failed: usize = points.iter().map(|p| p.not_quarantined).sum();
    let mut out = vec![
        Figure {
            key: "scaling_largest_wall_ms",
            label: format!("scaling: {} in sim mode, wall time", largest.name),
            value: largest.wall_ms,
            unit: "ms",
            target: Some(Target::AtMost(LARGEST_WALL_TARGET_MS)),
            detail: format!(
                "{} L-Servers; {}",
                largest.lservers,
                if largest.passed { "passed" } else { "FAILED" }
            ),
        },
        Figure {
            key: "scaling_wall_per_lserver_ratio",
            label: "  wall time per L-Server, largest / smallest".into(),
            value: largest.us_per_lserver() / smallest.us_per_lserver().max(f64::MIN_POSITIVE),
            unit: "x",
            target: Some(Target::AtMost(PER_LSERVER_TARGET)),
            detail: format!(
                "{:.1} us at {} / {:.1} us at {}",
                largest.us_per_lserver(),
                largest.lservers,
                smallest.us_per_lserver(),
                smallest.lservers
            ),
        },
    ];
    if let Some((ratio, p)) = worst {
        out.push(Figure {
            key: "scaling_worst_makespan_ratio",
            label: "  worst makespan / lower bound on the curve".into(),
            value: ratio,
            unit: "x",
            target: Some(Target::AtMost(MAKESPAN_TARGET)),
            detail: format!(
                "{} (contained or confirmed); {failed} L-Servers not quarantined on the curve",
                p.name
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(lservers: usize, wall_ms: f64, ratio: f64) -> ScalePoint {
        ScalePoint {
            name: format!("outbreak-{lservers}"),
            lservers,
            wall_ms,
            makespan_ratio: 1.0,
            confirmed_ratio: ratio,
            not_quarantined: 0,
            passed: true,
        }
    }

    #[test]
    fn the_per_lserver_figure_compares_the_ends_of_the_curve() {
        let points = [point(10_000, 1_000.0, 1.0), point(100_000, 12_000.0, 1.01)];
        let figures = figures(&points);
        let per = figures
            .iter()
            .find(|f| f.key == "scaling_wall_per_lserver_ratio")
            .unwrap();
        assert!((per.value - 1.2).abs() < 1e-9, "{}", per.value);
        assert_eq!(per.met(), Some(true));
        let largest = figures
            .iter()
            .find(|f| f.key == "scaling_largest_wall_ms")
            .unwrap();
        assert_eq!(largest.met(), Some(false), "12 s is over the 10 s target");
        let worst = figures
            .iter()
            .find(|f| f.key == "scaling_worst_makespan_ratio")
            .unwrap();
        assert!((worst.value - 1.01).abs() < 1e-9);
    }
}
