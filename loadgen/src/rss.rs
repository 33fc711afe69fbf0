//! The server's memory, CPU time and file limit, read from /proc.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;

/// The process's resident set size (`VmRSS` of /proc/<pid>/status), in KiB.
pub fn vm_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("{path} has no VmRSS line"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    first_number_after(status, "VmRSS:")
}

/// The first number on the first line of `text` that starts with `label`.
fn first_number_after(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// `/proc` counts CPU time in ticks of `USER_HZ`, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// The CPU time the process has used, user and system, in seconds
/// (`utime` + `stime` of /proc/<pid>/stat).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("{path} has no utime and stime"))?;
    Ok(ticks as f64 / TICKS_PER_SECOND)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // After the command name, in parentheses that may hold anything, come
    // the fields from the third on: utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The process's soft open-file limit (/proc/<pid>/limits), when readable.
pub fn max_open_files(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_max_open_files(&limits)
}

fn parse_max_open_files(limits: &str) -> Option<u64> {
    // The soft limit: the first of the line's numbers.
    first_number_after(limits, "Max open files")
}

/// One RSS sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since sampling started.
    pub at_s: f64,
    /// VmRSS in KiB.
    pub rss_kb: u64,
}

/// Samples a process's RSS at a fixed interval in the background.
#[derive(Debug)]
pub struct Sampler {
    task: JoinHandle<anyhow::Result<Vec<Sample>>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Sampler {
    /// Starts sampling `pid` now and then every `every`.
    pub fn start(pid: u32, every: Duration) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut samples = Vec::new();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => samples.push(Sample {
                        at_s: start.elapsed().as_secs_f64(),
                        rss_kb: vm_rss_kb(pid)?,
                    }),
                    _ = &mut stopped => break,
                }
            }
            samples.push(Sample {
                at_s: start.elapsed().as_secs_f64(),
                rss_kb: vm_rss_kb(pid)?,
            });
            Ok(samples)
        });
        Self { task, stop }
    }

    /// Takes a last sample and returns them all.
    pub async fn finish(self) -> anyhow::Result<Vec<Sample>> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(samples) => samples,
            Err(e) => bail!("the RSS sampler failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let status =
            "Name:\tsse-ticket\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_max_open_files(limits), Some(20000));
        let stat = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20";
        assert_eq!(parse_cpu_ticks(stat), Some(281));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn reads_own_rss() {
        assert!(vm_rss_kb(std::process::id()).expect("own status") > 0);
        assert!(max_open_files(std::process::id()).is_some());
        assert!(cpu_seconds(std::process::id()).expect("own stat") >= 0.0);
    }
}
