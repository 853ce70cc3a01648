//! The device-group scope of a principal (SPEC §5), computed once per principal: the whole
//! tenant, or a set of groups with every group below them. Every route and stream asks the same
//! [`Scope`] whether a device is visible.

use std::collections::{BTreeSet, HashMap};

/// What part of its tenant a principal reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole tenant: every device, and tenant-wide settings.
    Tenant,
    /// Only devices in these groups (already expanded to every sub-group). Devices without a
    /// group are outside it.
    Groups(BTreeSet<String>),
}

impl Scope {
    /// The scope of a principal confined to `roots` (empty = the whole tenant), given the
    /// tenant's group tree as `(group, parent)` pairs.
    pub fn of<'a>(roots: &[String], tree: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Scope {
        match roots.is_empty() {
            true => Scope::Tenant,
            false => Scope::Groups(groups_in_scope(roots, tree)),
        }
    }

    /// Whether a device in `group` is visible.
    pub fn sees(&self, group: Option<&str>) -> bool {
        match self {
            Scope::Tenant => true,
            Scope::Groups(groups) => group.is_some_and(|group| groups.contains(group)),
        }
    }

    /// Whether the group `id` itself lies inside the scope.
    pub fn contains_group(&self, id: &str) -> bool {
        self.sees(Some(id))
    }

    /// Whether this is the whole tenant (tenant-wide settings need it).
    pub fn is_whole_tenant(&self) -> bool {
        matches!(self, Scope::Tenant)
    }

    /// Whether everything `other` reaches, this scope reaches too.
    pub fn covers(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Tenant, _) => true,
            (Scope::Groups(_), Scope::Tenant) => false,
            (Scope::Groups(mine), Scope::Groups(theirs)) => theirs.is_subset(mine),
        }
    }

    /// What both scopes reach.
    pub fn intersect(&self, other: &Scope) -> Scope {
        match (self, other) {
            (Scope::Tenant, scope) | (scope, Scope::Tenant) => scope.clone(),
            (Scope::Groups(mine), Scope::Groups(theirs)) => Scope::Groups(mine.intersection(theirs).cloned().collect()),
        }
    }

    /// The groups to filter listings by; `None` for the whole tenant.
    pub fn group_filter(&self) -> Option<Vec<String>> {
        match self {
            Scope::Tenant => None,
            Scope::Groups(groups) => Some(groups.iter().cloned().collect()),
        }
    }
}

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

    const TREE: [(&str, Option<&str>); 5] =
        [("eu", None), ("de", Some("eu")), ("berlin", Some("de")), ("us", None), ("loop", Some("loop"))];

    #[test]
    fn expands_sub_trees_only() {
        let scope = groups_in_scope(&["de".to_owned(), "loop".to_owned()], TREE);
        assert_eq!(scope.into_iter().collect::<Vec<_>>(), ["berlin", "de", "loop"]);
    }

    #[test]
    fn scopes_see_cover_and_intersect() {
        let de = Scope::of(&["de".to_owned()], TREE);
        let eu = Scope::of(&["eu".to_owned()], TREE);
        assert_eq!(Scope::of(&[], TREE), Scope::Tenant);
        assert!(de.sees(Some("berlin")) && !de.sees(Some("eu")) && !de.sees(None));
        assert!(Scope::Tenant.sees(None));
        assert!(eu.covers(&de) && !de.covers(&eu) && Scope::Tenant.covers(&eu) && !eu.covers(&Scope::Tenant));
        assert_eq!(eu.intersect(&de), de);
        assert_eq!(Scope::Tenant.intersect(&de), de);
        assert!(!de.is_whole_tenant());
    }
}
