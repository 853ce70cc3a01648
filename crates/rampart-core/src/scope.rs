//! The device-group scope of a user: their groups and every group below them.

use std::collections::{BTreeSet, HashMap};

/// Expands `roots` to every group in their sub-trees. `tree` holds `(group, parent)` pairs of
/// the tenant; unknown roots are kept (they simply match no device). Cycles cannot loop.
pub fn groups_in_scope<'a>(
    roots: &[String],
    tree: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> BTreeSet<String> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for (group, parent) in tree {
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(group);
        }
    }
    let mut scope: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<&str> = roots.iter().map(String::as_str).collect();
    while let Some(group) = pending.pop() {
        if scope.insert(group.to_owned()) {
            pending.extend(children.get(group).into_iter().flatten().copied());
        }
    }
    scope
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_sub_trees_only() {
        let tree = [("eu", None), ("de", Some("eu")), ("berlin", Some("de")), ("us", None), ("loop", Some("loop"))];
        let scope = groups_in_scope(&["de".to_owned(), "loop".to_owned()], tree);
        assert_eq!(scope.into_iter().collect::<Vec<_>>(), ["berlin", "de", "loop"]);
    }
}
