//! Who may do what on the control socket: the peer's credentials as the
//! kernel reports them for the connection (`SO_PEERCRED`), checked against
//! `[control.access]`. The user database is read on every connection, so
//! adding someone to a group takes effect without a restart.

use crate::api::Class;
use crate::config::AccessConfig;
use std::path::PathBuf;

/// The process at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective user id.
    pub uid: u32,
    /// Effective primary group id.
    pub gid: u32,
    /// Process id at connect time, where the kernel tells it.
    pub pid: Option<i32>,
}

/// The allow-lists and where the user database is.
#[derive(Debug, Clone)]
pub struct Access {
    config: AccessConfig,
    passwd: PathBuf,
    group: PathBuf,
    /// The daemon's own user: it may always operate (it could do anything
    /// the daemon does anyway), so a daemon run by hand serves its owner.
    own_uid: Option<u32>,
}

/// The few facts of `/etc/passwd` and `/etc/group` that matter here.
#[derive(Debug, Default)]
struct UserDb {
    /// The peer's user name, if it has one.
    user: Option<String>,
    /// Group name → (gid, member user names).
    groups: Vec<(String, u32, Vec<String>)>,
}

impl UserDb {
    fn read(passwd: &std::path::Path, group: &std::path::Path, uid: u32) -> Self {
        let text = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        let user = text(passwd).lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
        });
        let groups = text(group)
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                let gid = f.get(2)?.parse().ok()?;
                let members = f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                Some((f[0].to_string(), gid, members))
            })
            .collect();
        Self { user, groups }
    }
}

impl Access {
    /// Check against `config`, with the system's user database.
    pub fn new(config: AccessConfig) -> Self {
        Self {
            own_uid: Some(rustix::process::geteuid().as_raw()),
            ..Self::with_files(config, "/etc/passwd".into(), "/etc/group".into())
        }
    }

    /// Check against `config`, with the user database in these files.
    pub fn with_files(config: AccessConfig, passwd: PathBuf, group: PathBuf) -> Self {
        Self {
            config,
            passwd,
            group,
            own_uid: None,
        }
    }

    /// What `peer` may do: operate (which includes reading), read, or
    /// nothing.
    pub fn class(&self, peer: &Peer) -> Option<Class> {
        let db = UserDb::read(&self.passwd, &self.group, peer.uid);
        let user_listed = |list: &[String]| {
            list.iter().any(|u| {
                u.parse::<u32>().ok() == Some(peer.uid) || db.user.as_deref() == Some(u.as_str())
            })
        };
        let in_group = |g: &String| {
            let entry = db
                .groups
                .iter()
                .find(|(name, gid, _)| name == g || g.parse::<u32>().ok() == Some(*gid));
            let gid = g.parse::<u32>().ok().or(entry.map(|e| e.1));
            gid == Some(peer.gid)
                || entry.is_some_and(|(_, _, members)| {
                    db.user.as_ref().is_some_and(|u| members.contains(u))
                })
        };
        let c = &self.config;
        if self.own_uid == Some(peer.uid)
            || user_listed(&c.operate_users)
            || c.operate_groups.iter().any(in_group)
        {
            Some(Class::Operate)
        } else if user_listed(&c.read_users) || c.read_groups.iter().any(in_group) {
            Some(Class::Read)
        } else {
            None
        }
    }

    /// Names in the configuration that match nothing in the user
    /// database (worth a warning at start: nobody gets access by them).
    pub fn unknown_names(&self) -> Vec<String> {
        let passwd = std::fs::read_to_string(&self.passwd).unwrap_or_default();
        let groups = UserDb::read(&self.passwd, &self.group, u32::MAX).groups;
        let c = &self.config;
        let users = c.operate_users.iter().chain(&c.read_users);
        let unknown_users = users.filter(|u| {
            u.parse::<u32>().is_err()
                && !passwd
                    .lines()
                    .any(|l| l.split(':').next() == Some(u.as_str()))
        });
        let group_names = c.operate_groups.iter().chain(&c.read_groups);
        let unknown_groups = group_names
            .filter(|g| g.parse::<u32>().is_err() && !groups.iter().any(|(name, _, _)| name == *g));
        unknown_users
            .map(|u| format!("user {u}"))
            .chain(unknown_groups.map(|g| format!("group {g}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(dir: &std::path::Path) -> Access {
        std::fs::write(
            dir.join("passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n\
             bob:x:1001:1001::/:/bin/sh\ncarol:x:1002:1002::/:/bin/sh\neve:x:1003:1003::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("group"),
            "root:x:0:\nmgsd:x:900:alice\nmgsd-ro:x:901:bob,dave\ncarol:x:1002:\n",
        )
        .unwrap();
        let config = AccessConfig {
            read_users: vec!["1003".into()],
            ..AccessConfig::default()
        };
        Access::with_files(config, dir.join("passwd"), dir.join("group"))
    }

    #[test]
    fn users_and_groups_by_name_id_membership_and_primary_group() {
        let dir = tempfile::tempdir().unwrap();
        let a = access(dir.path());
        let peer = |uid, gid| Peer {
            uid,
            gid,
            pid: None,
        };
        assert_eq!(a.class(&peer(0, 0)), Some(Class::Operate), "root by name");
        assert_eq!(
            a.class(&peer(1000, 1000)),
            Some(Class::Operate),
            "member of mgsd"
        );
        assert_eq!(
            a.class(&peer(1001, 1001)),
            Some(Class::Read),
            "member of mgsd-ro"
        );
        assert_eq!(
            a.class(&peer(1002, 901)),
            Some(Class::Read),
            "primary group mgsd-ro"
        );
        assert_eq!(a.class(&peer(1003, 1003)), Some(Class::Read), "uid listed");
        assert_eq!(a.class(&peer(1002, 1002)), None, "in neither");
        assert_eq!(a.class(&peer(4242, 4242)), None, "no such user");
        let none = Access::with_files(
            AccessConfig::default(),
            "/nonexistent".into(),
            "/nonexistent".into(),
        );
        assert_eq!(none.class(&peer(0, 0)), None, "names need the database");
        assert_eq!(a.unknown_names(), Vec::<String>::new());
        assert_eq!(none.unknown_names().len(), 3);
    }
}
