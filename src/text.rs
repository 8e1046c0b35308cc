//! Words of messages chosen in one place: those that depend on a count, and
//! where in a text an offset is.

/// `one` when `n` is 1, else `many`: `plural(n, "file", "files")`.
pub fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// 1-based line and column (in characters) of a byte offset into `text`;
/// an offset past the end or inside a character counts as the one before.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
