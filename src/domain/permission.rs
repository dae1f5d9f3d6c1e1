//! keyreg's own permissions, apart from every org's actions, and the grant
//! rule that keeps a key from handing out more of them than it holds.
//!
//! The management permissions are the actions of the reserved services
//! (`keys`, `audit`, `orgs`, `roles`, `actors`). No wildcard grants one
//! (`scope` enforces that in its matcher), so `*` means "every action of
//! this org's own services" and never "everything keyreg can do". A set of
//! them fits in a byte: `Permissions`.

use std::fmt;

use crate::domain::scope::Scope;

/// keyreg's own services: their actions are its management permissions.
pub const RESERVED_SERVICES: [&str; 5] = ["keys", "audit", "orgs", "roles", "actors"];

/// Every management permission, in the order the docs list them.
pub const MANAGEMENT: [&str; 7] =
    ["orgs:create", "orgs:admin", "keys:admin", "keys:read", "audit:read", "roles:admin", "actors:assert"];

/// One of keyreg's own permissions, as code names it (its index is its
/// place in `MANAGEMENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    OrgsCreate,
    OrgsAdmin,
    KeysAdmin,
    KeysRead,
    AuditRead,
    RolesAdmin,
    ActorsAssert,
}

impl Permission {
    /// The action that names it in a scope (`keys:admin`).
    pub const fn name(self) -> &'static str {
        MANAGEMENT[self as usize]
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `service` is one of keyreg's own.
pub fn is_reserved(service: &str) -> bool {
    RESERVED_SERVICES.contains(&service)
}

/// A set of management permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions(u8);

impl Permissions {
    /// Every management permission: what keyreg itself (`system:` actors)
    /// may grant.
    pub const ALL: Permissions = Permissions((1 << MANAGEMENT.len()) - 1);

    /// The management permissions that any of `scopes` grants.
    pub fn granted_by<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Permissions {
        let mut set = Permissions::default();
        for scope in scopes {
            for (i, permission) in MANAGEMENT.iter().enumerate() {
                if scope.grants(permission, None) {
                    set.0 |= 1 << i;
                }
            }
        }
        set
    }

    /// Whether the set holds `permission`.
    pub fn has(self, permission: Permission) -> bool {
        self.0 & (1 << permission as usize) != 0
    }

    /// The permissions in `self` that are not in `other`.
    pub fn without(self, other: Permissions) -> Permissions {
        Permissions(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = &'static str> {
        MANAGEMENT.into_iter().enumerate().filter(move |(i, _)| self.0 & (1 << i) != 0).map(|(_, p)| p)
    }

    /// The set as scopes, each permission named.
    pub fn scopes(self) -> Vec<Scope> {
        self.iter().map(|p| Scope::parse(p).expect("a management permission is a scope")).collect()
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(scopes: &[&str]) -> Permissions {
        let parsed: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
        Permissions::granted_by(&parsed)
    }

    #[test]
    fn wildcards_grant_no_management_permission() {
        assert!(of(&["*", "*:*", "*:read", "*:admin*", "billing:*", "read"]).is_empty());
        assert_eq!(of(&["keys:*"]).to_string(), "keys:admin, keys:read");
        assert_eq!(of(&["audit:read", "*"]).to_string(), "audit:read");
        assert_eq!(of(&["orgs:*", "roles:*", "actors:*", "keys:*", "audit:*"]), Permissions::ALL);
    }

    #[test]
    fn sets_subtract() {
        let wanted = of(&["keys:admin", "audit:read", "roles:admin"]);
        let held = of(&["keys:*"]);
        assert_eq!(wanted.without(held).to_string(), "audit:read, roles:admin");
        assert!(held.has(Permission::KeysRead) && !held.has(Permission::AuditRead));
        assert!(of(&["keys:read"]).without(held).is_empty());
    }
}
