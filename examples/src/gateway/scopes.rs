//! JupyterHub's scopes, the subset the gateway checks, with their implications
//! (`admin:users` ⊃ `users` ⊃ `read:users` ⊃ `list:users`; `admin:servers` ⊃ `servers` ⊃
//! `read:servers`), and filters (`access:servers!user=alice`, `!server=alice/gpu`).

use std::fmt;
use std::str::FromStr;

/// A scope name the gateway knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Base {
    /// Create and delete users.
    AdminUsers,
    /// Modify users.
    Users,
    /// Read users' models.
    ReadUsers,
    /// List users.
    ListUsers,
    /// Start, stop and delete servers.
    AdminServers,
    /// Start and stop servers.
    Servers,
    /// Read servers' models and progress.
    ReadServers,
    /// Reach servers through the proxy.
    AccessServers,
    /// Read the hub's metrics.
    ReadMetrics,
    /// Read the token owner's own model (`/hub/api/user`).
    ReadSelf,
}

impl Base {
    const NAMES: [(&'static str, Base); 10] = [
        ("admin:users", Base::AdminUsers),
        ("users", Base::Users),
        ("read:users", Base::ReadUsers),
        ("list:users", Base::ListUsers),
        ("admin:servers", Base::AdminServers),
        ("servers", Base::Servers),
        ("read:servers", Base::ReadServers),
        ("access:servers", Base::AccessServers),
        ("read:metrics", Base::ReadMetrics),
        ("self", Base::ReadSelf),
    ];

    /// Whether holding `self` grants `other`.
    pub fn implies(self, other: Base) -> bool {
        use Base::*;
        self == other
            || match self {
                AdminUsers => matches!(other, Users | ReadUsers | ListUsers),
                Users => matches!(other, ReadUsers | ListUsers),
                ReadUsers => matches!(other, ListUsers),
                AdminServers => matches!(other, Servers | ReadServers),
                Servers => matches!(other, ReadServers),
                _ => false,
            }
    }

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("?", |(n, _)| n)
    }
}

/// A scope with an optional filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// What it allows.
    pub base: Base,
    /// To whom: every user, or one user, or one server.
    pub filter: Filter,
}

/// JupyterHub's scope filters (the two the gateway uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// No filter.
    All,
    /// `!user=name`.
    User(String),
    /// `!server=name/server`.
    Server(String, String),
}

/// A scope string the gateway does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?}")]
pub struct UnknownScope(String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, filter) = match s.split_once('!') {
            Some((name, filter)) => (name, Some(filter)),
            None => (s, None),
        };
        let base = Base::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| *b)
            .ok_or_else(|| UnknownScope(s.to_owned()))?;
        let filter = match filter {
            None => Filter::All,
            Some(f) => match f.split_once('=') {
                Some(("user", user)) if !user.is_empty() => Filter::User(user.to_owned()),
                Some(("server", server)) => match server.split_once('/') {
                    Some((user, name)) if !user.is_empty() => {
                        Filter::Server(user.to_owned(), name.to_owned())
                    }
                    _ => return Err(UnknownScope(s.to_owned())),
                },
                _ => return Err(UnknownScope(s.to_owned())),
            },
        };
        Ok(Scope { base, filter })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.name())?;
        match &self.filter {
            Filter::All => Ok(()),
            Filter::User(u) => write!(f, "!user={u}"),
            Filter::Server(u, s) => write!(f, "!server={u}/{s}"),
        }
    }
}

impl Scope {
    /// An unfiltered scope.
    pub fn all(base: Base) -> Self {
        Scope {
            base,
            filter: Filter::All,
        }
    }

    /// Whether this scope allows `needed` on `user`'s server `server` (`None`: not about one
    /// user, such as listing users or metrics).
    pub fn allows(&self, needed: Base, user: Option<&str>, server: Option<&str>) -> bool {
        if !self.base.implies(needed) {
            return false;
        }
        match (&self.filter, user) {
            (Filter::All, _) => true,
            (_, None) => false,
            (Filter::User(u), Some(user)) => u == user,
            (Filter::Server(u, s), Some(user)) => {
                u == user && server.is_some_and(|server| server == s)
            }
        }
    }
}

/// The scopes of one token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// Every scope (JupyterHub's `admin: true` services).
    pub fn admin() -> Self {
        ScopeSet(Base::NAMES.iter().map(|(_, b)| Scope::all(*b)).collect())
    }

    /// Parses names, skipping unknown ones (configuration is validated before).
    pub fn parse_all(names: &[String]) -> Self {
        let mut set: Vec<Scope> = names.iter().filter_map(|n| n.parse().ok()).collect();
        set.push(Scope::all(Base::ReadSelf));
        ScopeSet(set)
    }

    /// What a user's own browser session or server token holds: their own servers.
    pub fn owner(user: &str) -> Self {
        let mine = |base| Scope {
            base,
            filter: Filter::User(user.to_owned()),
        };
        ScopeSet(vec![
            mine(Base::Servers),
            mine(Base::ReadUsers),
            mine(Base::AccessServers),
            Scope::all(Base::ReadSelf),
        ])
    }

    /// A single-user server's own token: `access:servers!server=user/name` and `self`
    /// (what jupyterhub-singleuser needs to check its visitors).
    pub fn server(user: &str, server: &str) -> Self {
        ScopeSet(vec![
            Scope {
                base: Base::AccessServers,
                filter: Filter::Server(user.to_owned(), server.to_owned()),
            },
            Scope::all(Base::ReadSelf),
        ])
    }

    /// Adds a scope.
    pub fn push(&mut self, scope: Scope) {
        self.0.push(scope);
    }

    /// Whether any scope allows `needed` on `user`/`server`.
    pub fn permits(&self, needed: Base, user: Option<&str>, server: Option<&str>) -> bool {
        self.0.iter().any(|s| s.allows(needed, user, server))
    }

    /// Whether an unfiltered scope allows `needed` (e.g. `admin:users`).
    pub fn allows(&self, needed: &Scope) -> bool {
        self.0.iter().any(|s| {
            s.base.implies(needed.base) && (s.filter == Filter::All || s.filter == needed.filter)
        })
    }

    /// The names, as `/hub/api/user` lists them.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implications_follow_jupyterhub() {
        let admin: Scope = "admin:servers".parse().unwrap();
        assert!(admin.allows(Base::Servers, Some("a"), Some("")));
        assert!(admin.allows(Base::ReadServers, Some("a"), Some("")));
        assert!(!admin.allows(Base::AccessServers, Some("a"), Some("")));
        let list: Scope = "list:users".parse().unwrap();
        assert!(!list.allows(Base::ReadUsers, None, None));
    }

    #[test]
    fn filters_narrow_to_one_user_or_server() {
        let mine: Scope = "access:servers!user=alice".parse().unwrap();
        assert!(mine.allows(Base::AccessServers, Some("alice"), Some("gpu")));
        assert!(!mine.allows(Base::AccessServers, Some("bob"), Some("")));
        assert!(!mine.allows(Base::AccessServers, None, None));
        let one: Scope = "access:servers!server=alice/".parse().unwrap();
        assert!(one.allows(Base::AccessServers, Some("alice"), Some("")));
        assert!(!one.allows(Base::AccessServers, Some("alice"), Some("gpu")));
        assert_eq!(one.to_string(), "access:servers!server=alice/");
    }

    #[test]
    fn unknown_scopes_are_refused() {
        assert!("admin".parse::<Scope>().is_err());
        assert!("servers!group=x".parse::<Scope>().is_err());
        assert!("servers!server=/x".parse::<Scope>().is_err());
    }

    #[test]
    fn an_owner_reaches_only_their_servers() {
        let alice = ScopeSet::owner("alice");
        assert!(alice.permits(Base::AccessServers, Some("alice"), Some("")));
        assert!(alice.permits(Base::Servers, Some("alice"), Some("x")));
        assert!(!alice.permits(Base::AccessServers, Some("bob"), Some("")));
        assert!(!alice.permits(Base::ListUsers, None, None));
    }
}
