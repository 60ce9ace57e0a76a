//! `--workers auto`: the CPUs this process may run on — its affinity mask, capped by the
//! cgroup CPU quota rounded up, at least 1.
//!
//! The quota parsers are pure (text in, number out); [`available`] reads the files.

use std::path::Path;

/// The CPUs a cgroup v2 `cpu.max` allows (`"max 100000"` → none; `"150000 100000"` → 2).
pub(crate) fn quota_v2(cpu_max: &str) -> Option<usize> {
    let mut parts = cpu_max.split_whitespace();
    let quota = parts.next()?;
    let period = parts.next().unwrap_or("100000");
    if quota == "max" {
        return None;
    }
    cpus(quota.parse().ok()?, period.parse().ok()?)
}

/// The CPUs a cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` pair allows (`-1`: none).
pub(crate) fn quota_v1(quota_us: &str, period_us: &str) -> Option<usize> {
    let quota: i64 = quota_us.trim().parse().ok()?;
    let period: u64 = period_us.trim().parse().ok()?;
    cpus(u64::try_from(quota).ok()?, period)
}

/// `quota / period` rounded up, at least 1; `None` for a zero period or quota.
fn cpus(quota: u64, period: u64) -> Option<usize> {
    if quota == 0 || period == 0 {
        return None;
    }
    usize::try_from(quota.div_ceil(period))
        .ok()
        .map(|n| n.max(1))
}

/// The cgroup (v2 unified: `0::/path`) of this process from `/proc/self/cgroup` text.
pub(crate) fn cgroup_v2_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// `min(affinity, quota)`, at least 1.
pub(crate) fn combine(affinity: Option<usize>, quota: Option<usize>) -> usize {
    let n = match (affinity, quota) {
        (Some(a), Some(q)) => a.min(q),
        (Some(n), None) | (None, Some(n)) => n,
        (None, None) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    n.max(1)
}

/// The number of workers `auto` means for this process.
pub(crate) fn available() -> usize {
    let affinity = rustix::thread::sched_getaffinity(None)
        .ok()
        .map(|set| set.count() as usize)
        .filter(|n| *n > 0);
    combine(affinity, cgroup_quota())
}

fn cgroup_quota() -> Option<usize> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    if let Some(path) = read(Path::new("/proc/self/cgroup"))
        .as_deref()
        .and_then(cgroup_v2_path)
        .map(|p| Path::new("/sys/fs/cgroup").join(p.trim_start_matches('/')))
    {
        // The quota of this cgroup or of any parent: the tightest one applies.
        let mut best: Option<usize> = None;
        let mut dir = Some(path.as_path());
        while let Some(d) = dir {
            if let Some(q) = read(&d.join("cpu.max")).as_deref().and_then(quota_v2) {
                best = Some(best.map_or(q, |b| b.min(q)));
            }
            if d == Path::new("/sys/fs/cgroup") {
                break;
            }
            dir = d.parent();
        }
        if best.is_some() {
            return best;
        }
    }
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    quota_v1(
        &read(&v1.join("cpu.cfs_quota_us"))?,
        &read(&v1.join("cpu.cfs_period_us"))?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cgroup_v2_quotas() {
        assert_eq!(quota_v2("max 100000\n"), None);
        assert_eq!(quota_v2("100000 100000\n"), Some(1));
        assert_eq!(quota_v2("150000 100000"), Some(2));
        assert_eq!(quota_v2("50000 100000"), Some(1));
        assert_eq!(quota_v2("400000"), Some(4));
        assert_eq!(quota_v2(""), None);
        assert_eq!(quota_v2("abc 100"), None);
        assert_eq!(quota_v2("100 0"), None);
    }

    #[test]
    fn cgroup_v1_quotas() {
        assert_eq!(quota_v1("-1\n", "100000\n"), None);
        assert_eq!(quota_v1("250000", "100000"), Some(3));
        assert_eq!(quota_v1("x", "100000"), None);
    }

    #[test]
    fn the_unified_cgroup_line_is_found() {
        let text = "12:cpu,cpuacct:/old\n0::/system.slice/tcpmap.service\n";
        assert_eq!(cgroup_v2_path(text), Some("/system.slice/tcpmap.service"));
        assert_eq!(cgroup_v2_path("1:name=systemd:/\n"), None);
    }

    #[test]
    fn the_tighter_of_affinity_and_quota_wins() {
        assert_eq!(combine(Some(8), Some(2)), 2);
        assert_eq!(combine(Some(2), Some(8)), 2);
        assert_eq!(combine(Some(3), None), 3);
        assert_eq!(combine(Some(0), None), 1);
        assert!(combine(None, None) >= 1);
        assert!(available() >= 1);
    }

    proptest! {
        #[test]
        fn quota_parsing_is_total_and_rounds_up(quota in 1u64..10_000_000, period in 1u64..1_000_000) {
            let n = quota_v2(&format!("{quota} {period}")).unwrap();
            prop_assert!(n >= 1);
            prop_assert!((n as u64) * period >= quota);
            prop_assert!(((n as u64) - 1) * period < quota);
        }

        #[test]
        fn any_text_parses_without_panicking(s in ".{0,30}", t in ".{0,30}") {
            let _ = quota_v2(&s);
            let _ = quota_v1(&s, &t);
            let _ = cgroup_v2_path(&s);
        }
    }
}
