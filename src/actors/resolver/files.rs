//! The resolver's view of resolv.conf and the hosts file, re-read when their mtime changes.
//!
//! Shared by the handle (hosts-file answers without an actor round trip) and the actor
//! (the resolv.conf snapshot a lookup uses). Files are stat'ed at most once per second and
//! parsed only when their modification time or size changed; a missing file means the
//! defaults (nameserver 127.0.0.1:53, no hosts entries). Parsing is `crate::dns`'s job.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::dns::conf::ResolvConf;
use crate::dns::hosts::HostsFile;

/// How often the files are stat'ed at most.
const RECHECK: Duration = Duration::from_secs(1);

/// What identifies a version of a file: its mtime and length (`None`: missing or unreadable).
type Stamp = Option<(SystemTime, u64)>;

/// The current parsed files and when they were last checked.
#[derive(Debug)]
pub(super) struct Files {
    resolv_path: PathBuf,
    hosts_path: PathBuf,
    conf: Arc<ResolvConf>,
    hosts: Arc<HostsFile>,
    conf_stamp: Stamp,
    hosts_stamp: Stamp,
    checked: Instant,
}

impl Files {
    /// Reads both files now.
    pub(super) fn load(resolv_path: PathBuf, hosts_path: PathBuf, now: Instant) -> Files {
        let conf_stamp = stamp(&resolv_path);
        let hosts_stamp = stamp(&hosts_path);
        let conf = Arc::new(read_conf(&resolv_path));
        let hosts = Arc::new(read_hosts(&hosts_path));
        Files {
            resolv_path,
            hosts_path,
            conf,
            hosts,
            conf_stamp,
            hosts_stamp,
            checked: now,
        }
    }

    /// The current resolv.conf, re-read first if it changed (checked at most once a second).
    pub(super) fn conf(&mut self, now: Instant) -> Arc<ResolvConf> {
        self.refresh(now);
        Arc::clone(&self.conf)
    }

    /// The current hosts file, re-read first if it changed (checked at most once a second).
    pub(super) fn hosts(&mut self, now: Instant) -> Arc<HostsFile> {
        self.refresh(now);
        Arc::clone(&self.hosts)
    }

    fn refresh(&mut self, now: Instant) {
        if now.saturating_duration_since(self.checked) < RECHECK {
            return;
        }
        self.checked = now;
        let conf_stamp = stamp(&self.resolv_path);
        if conf_stamp != self.conf_stamp {
            self.conf_stamp = conf_stamp;
            self.conf = Arc::new(read_conf(&self.resolv_path));
        }
        let hosts_stamp = stamp(&self.hosts_path);
        if hosts_stamp != self.hosts_stamp {
            self.hosts_stamp = hosts_stamp;
            self.hosts = Arc::new(read_hosts(&self.hosts_path));
        }
    }
}

fn stamp(path: &Path) -> Stamp {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_conf(path: &Path) -> ResolvConf {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot read resolv.conf; using nameserver 127.0.0.1");
            String::new()
        }
    };
    let conf = ResolvConf::parse(&text);
    for problem in &conf.problems {
        tracing::warn!(path = %path.display(), "{problem}");
    }
    tracing::debug!(path = %path.display(), nameservers = ?conf.nameservers, search = ?conf.search, "loaded resolv.conf");
    conf
}

fn read_hosts(path: &Path) -> HostsFile {
    match fs::read_to_string(path) {
        Ok(text) => HostsFile::parse(&text),
        Err(err) => {
            tracing::debug!(path = %path.display(), %err, "no hosts file");
            HostsFile::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_files_are_reread_at_most_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let (resolv, hosts) = (dir.path().join("resolv.conf"), dir.path().join("hosts"));
        fs::write(&resolv, "nameserver 10.0.0.1\n").unwrap();
        fs::write(&hosts, "10.0.0.5 five\n").unwrap();
        let start = Instant::now();
        let mut files = Files::load(resolv.clone(), hosts.clone(), start);
        assert!(files.hosts(start).lookup("five").is_some());

        fs::write(&resolv, "nameserver 10.0.0.2:5353\n").unwrap();
        fs::write(&hosts, "10.0.0.6 six six-alias\n").unwrap();
        assert!(
            files
                .hosts(start + Duration::from_millis(500))
                .lookup("five")
                .is_some(),
            "not re-checked yet"
        );
        let later = start + Duration::from_secs(2);
        assert!(files.hosts(later).lookup("six").is_some());
        assert_eq!(
            files.conf(later).nameservers,
            vec!["10.0.0.2:5353".parse().unwrap()]
        );

        fs::remove_file(&hosts).unwrap();
        assert!(
            files
                .hosts(later + Duration::from_secs(2))
                .lookup("six")
                .is_none(),
            "a removed file empties"
        );
    }
}
