//! MQTT topic names and filters: validation, matching (with the `$`-topic rule) and shared
//! subscriptions (`$share/<group>/<filter>`).

/// A topic name a client may PUBLISH to: non-empty, no wildcards, no U+0000, at most 65535
/// bytes.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= usize::from(u16::MAX) && !topic.contains(['+', '#', '\0'])
}

/// A topic filter: non-empty; `#` only as the whole last level; `+` only as a whole level; no
/// U+0000. A `$share/<group>/<filter>` filter is valid when its group and inner filter are.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.starts_with("$share/") {
        return parse_shared(filter).is_some();
    }
    valid_plain_filter(filter)
}

fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            "#" if is_last => {}
            "+" => {}
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// Whether `topic` (a topic name) matches `filter` (a plain filter, not `$share/...`).
/// Topics starting with `$` are not matched by a filter starting with a wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Split `$share/<group>/<filter>` into its group and filter. `None` when `filter` is not a
/// shared subscription or is a malformed one (empty group, a group with `+`/`#`, an invalid
/// inner filter).
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || !valid_plain_filter(inner) {
        return None;
    }
    Some((group, inner))
}

/// The number of levels of a topic name or filter (`a/b/c` → 3; `""` → 1).
pub fn levels(topic: &str) -> usize {
    topic.split('/').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, ok) in [
            ("a", true),
            ("a/b/c", true),
            ("/", true),
            ("a//b", true),
            ("$SYS/x", true),
            ("", false),
            ("a/+", false),
            ("a/#", false),
            ("a\0b", false),
        ] {
            assert_eq!(valid_topic_name(name), ok, "{name:?}");
        }
    }

    #[test]
    fn filters() {
        for (filter, ok) in [
            ("#", true),
            ("+", true),
            ("a/#", true),
            ("a/+/b", true),
            ("+/+", true),
            ("/#", true),
            ("$share/g/a/#", true),
            ("", false),
            ("a#", false),
            ("a/#/b", false),
            ("a/b+", false),
            ("#/a", false),
            ("$share/g", false),
            ("$share//a", false),
            ("$share/g+/a", false),
            ("$share/g/a/#/b", false),
        ] {
            assert_eq!(valid_topic_filter(filter), ok, "{filter:?}");
        }
    }

    #[test]
    fn matching() {
        for (filter, topic, ok) in [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "/b", true),
            ("+", "/b", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("a/+/c", "a//c", true),
        ] {
            assert_eq!(matches(filter, topic), ok, "{filter:?} {topic:?}");
        }
    }

    #[test]
    fn shared_and_levels() {
        assert_eq!(parse_shared("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$share/g/"), None);
        assert_eq!(levels("a/b/c"), 3);
        assert_eq!(levels(""), 1);
        assert_eq!(levels("/"), 2);
    }
}
