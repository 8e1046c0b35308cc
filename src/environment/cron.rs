//! The 5-field cron expressions of `backup.schedule`, as busybox crond (which
//! runs them in the backup service) reads them: numbers, `*`, ranges `a-b`,
//! steps `/n` and lists `a,b`. Checked here so that a typo is a diagnostic at
//! `validate`, not a backup that never runs.

/// The fields, their names and allowed values.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// What is wrong with `expression`, or `None` when busybox crond takes it.
pub fn problem(expression: &str) -> Option<String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Some(format!(
            "{} fields, not 5 (minute hour day-of-month month day-of-week)",
            fields.len()
        ));
    }
    fields
        .iter()
        .zip(FIELDS)
        .find_map(|(field, (name, min, max))| {
            let ok = field.split(',').all(|item| item_ok(item, min, max));
            (!ok).then(|| {
                format!(
                    "the {name} field `{field}` is not a list of {min}-{max}, `*`, `a-b` or `…/n`"
                )
            })
        })
}

fn item_ok(item: &str, min: u32, max: u32) -> bool {
    item_values(item, min, max).is_some()
}

/// The values one list item matches (`*`, `a`, `a-b`, each with an optional
/// `/n`; `a/n` runs from `a` to the field's end), or `None` when it is not one.
fn item_values(item: &str, min: u32, max: u32) -> Option<impl Iterator<Item = u32>> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u32>().ok())
            .flatten()
    };
    let in_range = |n: u32| (min..=max).contains(&n);
    let step = match step {
        Some(step) => number(step).filter(|n| (1..=max.max(1)).contains(n))?,
        None => 1,
    };
    let (from, to) = match range.split_once('-') {
        _ if range == "*" => (min, max),
        Some((a, b)) => (number(a)?, number(b)?),
        None if step > 1 => (number(range)?, max),
        None => (number(range)?, number(range)?),
    };
    (in_range(from) && in_range(to) && from <= to).then(|| (from..=to).step_by(step as usize))
}

/// How many times a day `expression` runs, when every day is alike (day of
/// month, month and day of week all `*`); `None` otherwise, or when it is
/// not an expression.
pub fn runs_per_day(expression: &str) -> Option<u32> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let [minute, hour, "*", "*", "*"] = fields[..] else {
        return None;
    };
    let count = |field: &str, (_, min, max): (&str, u32, u32)| {
        let mut values = std::collections::BTreeSet::new();
        for item in field.split(',') {
            values.extend(item_values(item, min, max)?);
        }
        u32::try_from(values.len()).ok()
    };
    Some(count(minute, FIELDS[0])? * count(hour, FIELDS[1])?)
}

#[cfg(test)]
mod tests {
    use super::{problem, runs_per_day};

    #[test]
    fn runs_a_day() {
        assert_eq!(runs_per_day("0 3 * * *"), Some(1));
        assert_eq!(runs_per_day("0 */4 * * *"), Some(6));
        assert_eq!(runs_per_day("0,30 1-2 * * *"), Some(4));
        assert_eq!(runs_per_day("*/15 * * * *"), Some(96));
        assert_eq!(runs_per_day("5/20 0 * * *"), Some(3));
        assert_eq!(runs_per_day("0 0 * * 0"), None);
        assert_eq!(runs_per_day("0 3 1 * *"), None);
        assert_eq!(runs_per_day("0 24 * * *"), None);
    }

    #[test]
    fn busybox_crond_expressions() {
        for good in [
            "17 3 * * *",
            "*/15 * * * *",
            "0 0-6/2 1,15 * 0",
            "0 0 * 12 7",
        ] {
            assert_eq!(problem(good), None, "{good}");
        }
        assert_eq!(
            problem("0 3 * *").as_deref(),
            Some("4 fields, not 5 (minute hour day-of-month month day-of-week)")
        );
        for bad in [
            "60 3 * * *",
            "0 24 * * *",
            "0 3 0 * *",
            "0 3 * 13 *",
            "0 3 * * 8",
            "0 3 * * mon",
            "*/0 * * * *",
            "5-1 * * * *",
            "@daily 1 2 3 4",
            "0 3 * * 1,",
            "- * * * *",
        ] {
            assert!(problem(bad).is_some(), "{bad}");
        }
    }
}
