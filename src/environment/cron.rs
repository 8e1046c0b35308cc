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
    let range_ok = match range.split_once('-') {
        _ if range == "*" => true,
        Some((a, b)) => {
            matches!((number(a), number(b)), (Some(a), Some(b)) if in_range(a) && in_range(b) && a <= b)
        }
        None => number(range).is_some_and(in_range),
    };
    range_ok && step.is_none_or(|s| number(s).is_some_and(|n| (1..=max.max(1)).contains(&n)))
}

#[cfg(test)]
mod tests {
    use super::problem;

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
