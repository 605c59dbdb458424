//! A criterion measurement of the benchmark thread's on-CPU time
//! (`/proc/thread-self/schedstat`): on a shared machine it leaves out the
//! time the thread waits for a core. The kernel updates it at least every
//! scheduler tick; criterion reads it once per sample of many iterations,
//! so that is small. Included by the benchmarks of several crates.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// On-CPU time of the benchmark thread.
pub(crate) struct CpuTime;

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        cpu_ns()
    }

    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(cpu_ns().saturating_sub(start))
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}
