//! What `/proc` says about a process group, and signals to it (through the `kill` command of
//! procps: no `unsafe`, no extra crate).
//!
//! CPU times in `/proc/<pid>/stat` are in clock ticks (`USER_HZ`). Its value is read once
//! from the auxiliary vector the kernel gave this process (`/proc/self/auxv`, entry
//! `AT_CLKTCK` = 17, which is what `sysconf(_SC_CLK_TCK)` and `getconf CLK_TCK` return);
//! 100, the value on every mainstream Linux architecture, if that cannot be read.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// `AT_CLKTCK` in `<elf.h>`.
const AT_CLKTCK: u64 = 17;

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`.
pub(crate) fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
            return 100.0;
        };
        let word = std::mem::size_of::<usize>();
        let read = |b: &[u8]| -> u64 {
            if word == 8 {
                u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]))
            } else {
                u64::from(u32::from_ne_bytes(b.try_into().unwrap_or([0; 4])))
            }
        };
        auxv.chunks_exact(2 * word)
            .map(|pair| (read(&pair[..word]), read(&pair[word..])))
            .find(|&(key, _)| key == AT_CLKTCK)
            .map_or(100.0, |(_, v)| v as f64)
            .max(1.0)
    })
}

/// One live (not zombie) process: `/proc/<pid>/stat` fields after the command name.
#[derive(Debug, Clone, Copy)]
struct Stat {
    pgrp: u32,
    /// utime + stime + cutime + cstime, in ticks.
    ticks: u64,
}

fn stat(pid: &str) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), f[2] field 5 (pgrp), f[11..15] fields 14-17.
    if f.first().is_none_or(|s| *s == "Z" || *s == "X") {
        return None;
    }
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Some(Stat {
        pgrp: u32::try_from(num(2)).ok()?,
        ticks: num(11) + num(12) + num(13) + num(14),
    })
}

/// The live members of process group `pgid` (zombies excluded).
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(&pid.to_string()).is_some_and(|s| s.pgrp == pgid))
        .collect()
}

/// CPU seconds (user + system, including reaped children) and resident bytes of the live
/// members of each of the process groups `pgids` (one scan of `/proc`); groups without live
/// members are left out.
pub(crate) fn groups_usage(pgids: &[u32]) -> HashMap<u32, (f64, u64)> {
    let mut out: HashMap<u32, (f64, u64)> = HashMap::new();
    if pgids.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for pid in dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        if let Some(s) = stat(&pid.to_string())
            && pgids.contains(&s.pgrp)
        {
            let e = out.entry(s.pgrp).or_default();
            e.0 += s.ticks as f64 / clock_ticks();
            e.1 += rss_bytes(pid).unwrap_or(0);
        }
    }
    out
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sends `signal` (`TERM`, `KILL`) to process group `pgid` if it still has live members
/// (a process group ID cannot be reused while any member lives, so those are ours).
pub(crate) fn signal_group(pgid: u32, signal: &str) {
    if pgid <= 1 || group_members(pgid).is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ticks_match_getconf() {
        let out = Command::new("getconf").arg("CLK_TCK").output();
        if let Ok(out) = out
            && let Ok(v) = String::from_utf8_lossy(&out.stdout).trim().parse::<f64>()
        {
            assert!((clock_ticks() - v).abs() < f64::EPSILON);
        }
    }

    #[test]
    fn own_group_has_usage() {
        let me = stat("self").expect("own stat");
        assert!(group_members(me.pgrp).contains(&std::process::id()));
        let usage = groups_usage(&[me.pgrp]);
        assert!(usage[&me.pgrp].1 > 0);
    }
}
