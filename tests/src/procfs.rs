//! Resident memory and CPU time of a process, from /proc (Linux).

use std::sync::OnceLock;

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The highest resident set size the process has had, in KiB (`VmHWM`): exact, where sampling
/// `VmRSS` can miss a short peak.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU time in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Peak resident memory (KiB) per pid, sampled every 100 ms until the task is aborted.
pub type Peaks = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, u64>>>;

/// Samples the resident memory of `pids` every 100 ms until the returned task is aborted.
pub fn sample_peaks(pids: Vec<u32>) -> (Peaks, tokio::task::JoinHandle<()>) {
    let peaks = Peaks::default();
    let shared = peaks.clone();
    let task = tokio::spawn(async move {
        loop {
            for &pid in &pids {
                if let Some(rss) = rss_kib(pid) {
                    let mut p = shared.lock().expect("peaks lock");
                    let e = p.entry(pid).or_insert(0);
                    *e = (*e).max(rss);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    (peaks, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let rss = rss_kib(pid).expect("VmRSS");
        assert!(rss > 0);
        // Read after it: the peak so far is at least what was resident then.
        assert!(peak_rss_kib(pid).is_some_and(|k| k >= rss));
        assert!(cpu_seconds(pid).is_some_and(|s| s >= 0.0));
    }
}
