//! Words of messages that depend on a count, chosen in one place.

/// `one` when `n` is 1, else `many`: `plural(n, "file", "files")`.
pub fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
