//! The deploy protocol, defined once: the steps and results `remote.sh`
//! announces, the verdicts of `status` and the results of the data ops
//! (backup, backups, restore), with their wire words and exit codes, and the
//! prelude that hands them — with the reserved secret names and the request —
//! to the script. A test holds the script (and the backup service's script,
//! whose steps pass through it) to these words.

use std::fmt::Write as _;

/// An enum whose variants travel as words.
macro_rules! wire {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            pub fn word(self) -> &'static str {
                match self { $(Self::$variant => $word,)* }
            }

            pub fn parse(word: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.word() == word)
            }
        }
    };
}

wire! {
    /// A step of a deploy, announced as it starts.
    Step {
        Lock = "lock",
        Fetch = "fetch",
        Checkout = "checkout",
        Pull = "pull",
        Up = "up",
        Health = "health",
        Rollback = "rollback",
        /// The backup service's steps (its script prints them).
        Dump = "dump",
        Verify = "verify",
        Prune = "prune",
        /// A restore's: the tracker stopped, the data swapped, the tracker started.
        Stop = "stop",
        Restore = "restore",
        Start = "start",
    }
}

wire! {
    /// How a deploy attempt ended.
    Outcome {
        Deployed = "deployed",
        /// Already at that commit, unchanged and healthy.
        Noop = "noop",
        /// Failed, and the previous commit runs again.
        RolledBack = "rolled-back",
        /// Failed with nothing to roll back to, or stopped before any change.
        Failed = "failed",
        /// Not attempted: invalid request, a commit not on the deploy branch, a
        /// downgrade not asked for. The VM is as it was.
        Refused = "refused",
        RollbackFailed = "rollback-failed",
        /// Another deploy holds the lock.
        LockBusy = "lock-busy",
    }
}

wire! {
    /// What `status` concluded.
    Verdict {
        InSync = "in-sync",
        OutOfSync = "out-of-sync",
    }
}

wire! {
    /// How an op on the data (backup, backups, restore) ended.
    DataOutcome {
        BackedUp = "backed-up",
        Listed = "listed",
        Restored = "restored",
        /// The backup or the restore failed (the tracker runs again).
        Failed = "failed",
        /// Not attempted: an invalid request, nothing deployed, no backup service.
        Refused = "refused",
        /// A deploy or another data op holds the lock.
        LockBusy = "lock-busy",
    }
}

impl DataOutcome {
    pub fn code(self) -> i32 {
        match self {
            Self::BackedUp | Self::Listed | Self::Restored => 0,
            Self::Failed => 1,
            Self::Refused => 2,
            Self::LockBusy => 4,
        }
    }
}

impl Outcome {
    /// The script's exit code for this result.
    pub fn code(self) -> i32 {
        match self {
            Self::Deployed | Self::Noop => 0,
            Self::RolledBack | Self::Failed => 1,
            Self::Refused => 2,
            Self::RollbackFailed => 3,
            Self::LockBusy => 4,
        }
    }

    pub fn success(self) -> bool {
        self.code() == 0
    }
}

impl Verdict {
    pub fn code(self) -> i32 {
        match self {
            Self::InSync => 0,
            Self::OutOfSync => 1,
        }
    }
}

/// The prefix of the lines the CLI reads on the script's stdout.
pub const MARKER: &str = "@@tracker-gitops ";

/// Shell text that precedes `remote.sh`: the protocol's words and codes, the
/// reserved secret names, and the request as `tg_req_NAME` assignments.
#[derive(Debug)]
pub struct Prelude(String);

impl Prelude {
    pub fn new() -> Self {
        let codes = |pairs: &mut dyn Iterator<Item = (&str, i32)>| {
            pairs
                .map(|(word, code)| format!("[{word}]={code}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut text = String::new();
        let results = codes(&mut Outcome::ALL.iter().map(|o| (o.word(), o.code())));
        let verdicts = codes(&mut Verdict::ALL.iter().map(|v| (v.word(), v.code())));
        let data = codes(&mut DataOutcome::ALL.iter().map(|o| (o.word(), o.code())));
        let names: Vec<_> = crate::environment::RESERVED_NAMES
            .iter()
            .map(|n| format!("[{n}]=1"))
            .collect();
        let _ = writeln!(text, "declare -A tg_results=({results})");
        let _ = writeln!(text, "declare -A tg_verdicts=({verdicts})");
        let _ = writeln!(text, "declare -A tg_data_results=({data})");
        let _ = writeln!(text, "declare -A tg_reserved_names=({})", names.join(" "));
        let _ = writeln!(
            text,
            "tg_reserved_prefixes=({})",
            crate::environment::RESERVED_PREFIXES.join(" ")
        );
        Self(text)
    }

    /// Adds `tg_req_NAME='value'`.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        let _ = writeln!(self.0, "tg_req_{name}={}", super::ssh::shell_quote(value));
        self
    }

    /// The prelude followed by the script.
    pub fn script(self) -> String {
        self.0 + super::REMOTE_SCRIPT
    }
}

impl Default for Prelude {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::process::Command;

    use super::*;
    use crate::deploy::REMOTE_SCRIPT;

    /// The words that follow `call` in the scripts (`tg_step lock`,
    /// `tg_finish refused "$sha"`, the backup script's `marker step dump`…),
    /// skipping variables.
    fn words_after(call: &str) -> BTreeSet<String> {
        let backup_script = include_str!("../../templates/backup.sh.hbs");
        let code: String = [REMOTE_SCRIPT, backup_script]
            .iter()
            .flat_map(|script| script.lines())
            .filter(|line| !line.trim_start().starts_with('#'))
            .map(|line| format!("{line}\n"))
            .collect();
        code.split(call)
            .skip(1)
            .filter_map(|rest| {
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                    .collect();
                (!word.is_empty()).then_some(word)
            })
            .collect()
    }

    fn all<T: Copy>(values: &[T], word: fn(T) -> &'static str) -> BTreeSet<String> {
        values.iter().map(|v| word(*v).to_string()).collect()
    }

    #[test]
    fn the_script_speaks_exactly_the_protocol() {
        // Steps run through tg_deploy_step name themselves there.
        let mut steps = words_after("tg_step ");
        steps.extend(words_after("tg_deploy_step "));
        steps.extend(words_after("marker step "));
        assert_eq!(steps, all(Step::ALL, Step::word));
        assert_eq!(words_after("tg_finish "), all(Outcome::ALL, Outcome::word));
        assert_eq!(
            words_after("tg_data_finish "),
            all(DataOutcome::ALL, DataOutcome::word)
        );
        assert_eq!(words_after("tg_verdict "), all(Verdict::ALL, Verdict::word));
    }

    #[test]
    fn words_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.word()), Some(*step));
        }
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.word()), Some(*outcome));
        }
        assert_eq!(Outcome::parse("deployed "), None);
    }

    /// The prelude is valid bash that defines what the script reads.
    #[test]
    fn prelude_defines_codes_and_reserved_names() {
        let prelude = Prelude::new().set("root", "/srv/it's here").0;
        let probe = format!(
            "{prelude}\nprintf '%s\\n' \"${{tg_results[refused]}}\" \"${{tg_verdicts[out-of-sync]}}\" \
             \"${{tg_reserved_names[FUNCNEST]}}\" \"${{tg_reserved_prefixes[0]}}\" \"$tg_req_root\""
        );
        let output = Command::new("bash").args(["-c", &probe]).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            format!(
                "2\n1\n1\n{}\n/srv/it's here\n",
                crate::environment::RESERVED_PREFIXES[0]
            )
        );
    }
}
