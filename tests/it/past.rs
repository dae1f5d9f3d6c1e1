//! Views of the past at the size where they are rebuilt in chunks: a past
//! listing whose filter passes over hundreds of keys still pages through
//! exactly what the whole past table lists, and keys made after the time
//! asked about, or deleted since, are where they were then.

use keyreg::domain::command::Command;
use keyreg::domain::id::KeyId;
use keyreg::domain::table::{Key, Status, Table};
use keyreg::domain::time::{Clock, Timestamp};
use keyreg::registry::Registry;

use crate::support::*;

/// Every page of a listing, following the cursor, over the whole past
/// table and over `page_as_of`'s tables: the same ids in the same order.
fn pages_agree(registry: &Registry, at: Timestamp, status: Status, limit: usize) -> usize {
    let whole = registry.table_as_of(at).unwrap();
    let wanted = |k: &Key| k.status_at(at) == status;
    let ids = |t: &Table, before: Option<KeyId>| -> Vec<KeyId> {
        t.keys_of(&acme(), before.as_ref()).filter(|k| wanted(k)).take(limit + 1).map(|k| k.id).collect()
    };
    let (mut cursor, mut seen) = (None, 0);
    loop {
        let expected = ids(&whole, cursor);
        let page = registry.page_as_of(&acme(), at, cursor, limit, wanted).unwrap();
        assert_eq!(ids(&page, cursor), expected, "the page after {cursor:?} as of {at}");
        seen += expected.len().min(limit);
        if expected.len() <= limit {
            return seen;
        }
        cursor = Some(expected[limit - 1]);
    }
}

#[test]
fn a_past_listing_pages_like_the_whole_past_table_across_many_chunks() {
    let dir = tempdir();
    let (registry, _, clock) = registry_with_clock(dir.path());
    let admin_key = registry.new_key(&registry.format().generate(), "admin", "", &["keys:admin"]);
    registry
        .execute_blocking(
            admin(),
            acme(),
            Command::CreateOrg { id: acme(), name: "Acme".into(), max_keys: None, admin: admin_key },
        )
        .unwrap();
    let mut ids = vec![];
    for i in 0..700 {
        let key = registry.new_key(&registry.format().generate(), &format!("k{i}"), "", &["billing:read"]);
        ids.push(key.id);
        registry.execute_blocking(admin(), acme(), Command::CreateKey(key)).unwrap();
    }
    clock.advance_seconds(10);
    let before_revokes = clock.now();
    clock.advance_seconds(10);
    // Revoked keys are one in 97: a revoked-only listing passes over
    // several chunks of keys to fill a page.
    for id in ids.iter().step_by(97) {
        let revoke = Command::Revoke { id: *id, expected: None, reason: None };
        registry.execute_blocking(admin(), acme(), revoke).unwrap();
    }
    clock.advance_seconds(10);
    let after_revokes = clock.now();
    clock.advance_seconds(10);
    for id in ids.iter().take(300) {
        let name = registry.read().table.key(id).unwrap().name().to_owned();
        registry.execute_blocking(admin(), acme(), Command::Delete { id: *id, confirm: name, reason: None }).unwrap();
    }
    assert_eq!(pages_agree(&registry, after_revokes, Status::Revoked, 3), 8);
    assert_eq!(pages_agree(&registry, before_revokes, Status::Revoked, 3), 0);
    assert_eq!(pages_agree(&registry, after_revokes, Status::Active, 250), 701 - 8);
    assert_eq!(pages_agree(&registry, clock.now(), Status::Deleted, 100), 300);
    registry.close().unwrap();
}
