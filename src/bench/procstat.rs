//! CPU time and peak memory of a process, from `/proc` (Linux).

/// User + system CPU seconds consumed so far by `pid`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// Peak resident set size (VmHWM) of `pid`, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds the whole host has spent so far, busy and idle (the first
/// line of `/proc/stat`; iowait counts as idle). Over a drain it says whether
/// the host's cores were what ran out: the worker and Redis share them with
/// the bench, the kernel's loopback traffic and whatever else runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostCpu {
    pub busy: f64,
    pub idle: f64,
}

pub fn host_cpu() -> Option<HostCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    host_cpu_of(stat.lines().next()?)
}

fn host_cpu_of(line: &str) -> Option<HostCpu> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let ticks: Vec<f64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if ticks.len() < 8 {
        return None;
    }
    let idle = ticks[3] + ticks[4];
    let busy = ticks.iter().sum::<f64>() - idle;
    let hz = ticks_per_second();
    Some(HostCpu {
        busy: busy / hz,
        idle: idle / hz,
    })
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_seconds(me).is_some());
        assert!(peak_rss(me).unwrap() > 1024 * 1024);
        assert!(cpu_seconds(u32::MAX).is_none());
    }

    #[test]
    fn reads_the_host_line_and_refuses_others() {
        let hz = ticks_per_second();
        let h = host_cpu_of("cpu  100 5 50 1000 20 3 7 15 0 0").unwrap();
        assert_eq!(h.idle, 1020.0 / hz);
        assert_eq!(h.busy, 180.0 / hz);
        assert_eq!(host_cpu_of("cpu0 100 5 50 1000 20 3 7 15 0 0"), None);
        assert_eq!(host_cpu_of("cpu  100 5 50 1000"), None);
        assert_eq!(host_cpu_of("cpu  100 x 50 1000 20 3 7 15"), None);
        let now = host_cpu().unwrap();
        assert!(now.busy > 0.0 && now.idle >= 0.0);
    }
}
