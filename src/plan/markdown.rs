//! A plan as Markdown, for a job summary or a pull request comment: the
//! changes that lose data first, in an alert no reviewer can miss; a line per
//! environment with its counts, then for each one that changes its
//! description, the services that change (unchanged ones named once), what
//! each recreation costs, its endpoints before and after, its topology as a
//! Mermaid diagram when that changes, and each file's diff folded in
//! `<details>` — the tool's own record (`.tracker-gitops/`) left out: what it
//! records is already said above. A pure function of the plan; a size cap
//! leaves out the largest diffs first.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;

use super::{
    Change, EndpointPlan, EndpointSide, EnvironmentPlan, FilePlan, Plan, ServicePlan, ServiceState,
    SetChange,
};
use crate::diagnostic::{display_path, display_text};
use crate::diff::ChangeKind;
use crate::stack::{Port, Protocol, Reason, Service, ServiceChange, Stack};
use crate::text::plural;

/// The whole plan.
pub fn render(plan: &Plan) -> String {
    render_within(plan, usize::MAX, "")
}

/// The plan in at most `limit` bytes: when longer, the largest diffs (then
/// diagrams) are left out first, with a note pointing to `full_plan_at`; the
/// summaries stay.
pub fn render_within(plan: &Plan, limit: usize, full_plan_at: &str) -> String {
    let mut blocks = blocks(plan, full_plan_at);
    if size(&blocks) > limit {
        leave_out(&mut blocks, limit, full_plan_at);
    }
    let mut text: String = blocks.into_iter().map(|b| b.text).collect();
    if text.len() > limit {
        // Only when the summaries alone are too long: cut, on a character boundary.
        const CUT: &str = "\n\n…(cut)\n";
        let mut end = limit.saturating_sub(CUT.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(CUT);
    }
    text
}

/// A piece of Markdown and, when it can be shortened, its shorter form.
struct Block {
    text: String,
    fallback: Option<String>,
    /// A topology diagram: dropped only once every diff is left out.
    diagram: bool,
}

impl Block {
    fn fixed(text: String) -> Self {
        Self {
            text,
            fallback: None,
            diagram: false,
        }
    }

    fn savings(&self) -> usize {
        self.fallback
            .as_ref()
            .map_or(0, |f| self.text.len().saturating_sub(f.len()))
    }
}

fn size(blocks: &[Block]) -> usize {
    blocks.iter().map(|b| b.text.len()).sum()
}

/// Shortens the blocks that save the most, diagrams last, until they fit in
/// `limit` with a note that says so.
fn leave_out(blocks: &mut Vec<Block>, limit: usize, full_plan_at: &str) {
    let note = format!(
        "> [!NOTE]\n> This plan is too long to show whole here: the largest diffs are left out. The full plan is in {full_plan_at}.\n\n"
    );
    let budget = limit.saturating_sub(note.len());
    let mut total = size(blocks);
    let mut order: Vec<usize> = (0..blocks.len())
        .filter(|&i| blocks[i].savings() > 0)
        .collect();
    order.sort_by_key(|&i| (blocks[i].diagram, Reverse(blocks[i].savings()), i));
    for i in order {
        if total <= budget {
            break;
        }
        total -= blocks[i].savings();
        blocks[i].text = blocks[i].fallback.take().unwrap_or_default();
    }
    let head = blocks
        .iter()
        .position(|b| b.text.starts_with("## "))
        .unwrap_or(0);
    blocks.insert(head + 1, Block::fixed(note));
}

/// The Markdown in pieces; the ones with a fallback can be shortened.
fn blocks(plan: &Plan, full_plan_at: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = data_loss(plan).into_iter().map(Block::fixed).collect();
    blocks.push(Block::fixed(head(plan)));
    // An environment whose own record alone changes has nothing to review.
    for env in plan
        .environments
        .iter()
        .filter(|env| env.is_changed() && !(env.counts.is_zero() && only_internal(env)))
    {
        blocks.push(Block::fixed(section(env)));
        if let Some(after) = &env.topology {
            blocks.push(Block {
                text: format!("Topology after deploy:\n\n{}\n", mermaid(after)),
                fallback: Some(String::new()),
                diagram: true,
            });
        }
        blocks.extend(
            env.files
                .iter()
                .filter(|file| !file.internal)
                .map(|file| file_block(file, full_plan_at)),
        );
    }
    blocks
}

/// The data losses of every environment, as GitHub alerts: those deploy
/// would refuse and those acknowledged, then stale acknowledgements.
fn data_loss(plan: &Plan) -> Option<String> {
    let mut losses = String::new();
    let mut stale = String::new();
    for env in &plan.environments {
        let name = display_text(&env.name);
        for checked in &env.data_loss.losses {
            let loss = &checked.loss;
            let state = if checked.acknowledged {
                "acknowledged"
            } else {
                "**NOT acknowledged: deploy refuses it**"
            };
            let _ = writeln!(
                losses,
                "> - **{name}** `{}` ({state}): {}: **{}**.",
                loss.id, loss.change, loss.consequence
            );
        }
        for id in &env.data_loss.stale {
            let _ = writeln!(
                stale,
                "> - **{name}** acknowledges `{id}`, which this change does not make"
            );
        }
    }
    if losses.is_empty() && stale.is_empty() {
        return None;
    }
    let mut text = String::new();
    if !losses.is_empty() {
        let _ = write!(
            text,
            "> [!CAUTION]\n> **DATA LOSS.** Deploying this loses or orphans data:\n>\n{losses}>\n\
             > `deploy` refuses a loss its environment file does not name in \
             `acknowledge_data_loss` (the id above); named there, it is reviewed here.\n\n"
        );
    }
    if !stale.is_empty() {
        let _ = write!(
            text,
            "> [!WARNING]\n> **Stale acknowledgements.**\n>\n{stale}>\n\
             > Remove an acknowledgement once its change is deployed: left in, it would accept \
             the same loss again later, unseen. `deploy` refuses one that names no loss of the \
             commit it deploys.\n\n"
        );
    }
    Some(text)
}

/// The title, the count of environments that change, a line for each.
fn head(plan: &Plan) -> String {
    let changed = plan.changed.len();
    let mut head = format!(
        "## tracker-gitops plan\n\nCompared with the rendered output at `{}`: {} of {} {} {}.\n\n",
        plan.base,
        changed,
        plan.environments.len(),
        plural(plan.environments.len(), "environment", "environments"),
        plural(changed, "changes", "change"),
    );
    for env in &plan.environments {
        // A removed environment is named by a directory at the base: escaped.
        let _ = writeln!(head, "- **{}**: {}", display_text(&env.name), summary(env));
    }
    head.push('\n');
    head
}

/// One line: e.g. `0 to add, 0 to change, 1 to recreate, 0 to remove`.
fn summary(env: &EnvironmentPlan) -> String {
    let counts = env.counts;
    match env.change {
        Change::Unchanged => "no changes".into(),
        Change::Added => format!("new environment: {counts}"),
        Change::Removed => format!("removed environment: {counts}"),
        Change::Changed if !counts.is_zero() => counts.to_string(),
        Change::Changed if only_internal(env) => {
            "only tracker-gitops's own record changes, no service does".into()
        }
        Change::Changed => "files change, no service does".into(),
    }
}

/// Whether every file that changes is the tool's own.
fn only_internal(env: &EnvironmentPlan) -> bool {
    env.files.iter().all(|file| file.internal)
}

/// An environment's heading, description, counts, services, the costs of
/// its recreations, endpoints, networks and volumes.
fn section(env: &EnvironmentPlan) -> String {
    let mut out = format!("### {}\n\n", display_text(&env.name));
    if let Some(description) = &env.description {
        let _ = writeln!(out, "> {}\n", display_text(description));
    }
    let _ = writeln!(out, "**Plan: {}.**\n", env.counts);
    let (unchanged, changing): (Vec<_>, Vec<_>) = env
        .services
        .iter()
        .partition(|service| service.change == ServiceChange::Unchanged);
    if !changing.is_empty() {
        out.push_str("| service | change | details |\n|---|---|---|\n");
        for service in &changing {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                service.name,
                service.change.verb(),
                details(service).replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    if !unchanged.is_empty() {
        let names: Vec<_> = unchanged.iter().map(|s| s.name.as_str()).collect();
        let _ = writeln!(out, "Unchanged: {}.\n", names.join(", "));
    }
    let recreated: Vec<_> = changing.iter().filter(|s| !s.costs.is_empty()).collect();
    if !recreated.is_empty() {
        out.push_str("What the recreations cost:\n\n");
        for service in recreated {
            let _ = writeln!(out, "- **{}**:", service.name);
            for cost in &service.costs {
                let _ = writeln!(out, "  - {cost}");
            }
        }
        out.push('\n');
    }
    if !env.endpoints.is_empty() {
        out.push_str(&endpoints(&env.endpoints));
    }
    for (what, changes) in [("Networks", &env.networks), ("Volumes", &env.volumes)] {
        if !changes.is_empty() {
            let _ = writeln!(out, "{what}: {}\n", set_changes(changes));
        }
    }
    out
}

/// The endpoints table: each endpoint before and after.
fn endpoints(endpoints: &[EndpointPlan]) -> String {
    let side = |side: &Option<EndpointSide>| {
        side.as_ref().map_or_else(
            || "—".to_string(),
            |side| {
                let reach = if side.public { "public" } else { "loopback" };
                format!("`{}` ({reach})", side.url)
            },
        )
    };
    let mut out =
        String::from("Endpoints on the VM:\n\n| endpoint | before | after |\n|---|---|---|\n");
    for endpoint in endpoints {
        let after = match endpoint.change {
            Change::Unchanged => "unchanged".to_string(),
            Change::Removed => "removed".to_string(),
            Change::Added | Change::Changed => side(&endpoint.after),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            endpoint.kind,
            side(&endpoint.before),
            after
        );
    }
    out.push('\n');
    out
}

/// The table's details of a service: its image and published ports when added
/// or removed; why it is recreated, with image and published-port changes.
fn details(service: &ServicePlan) -> String {
    let image_and_ports = |state: &ServiceState, verb: &str| {
        let mut text = format!("`{}`", state.image);
        let ports: Vec<_> = published(&state.ports)
            .iter()
            .map(|p| format!("`{p}`"))
            .collect();
        if !ports.is_empty() {
            let _ = write!(text, "; {verb} {}", ports.join(", "));
        }
        text
    };
    match (&service.change, &service.before, &service.after) {
        (ServiceChange::Added, _, Some(after)) => image_and_ports(after, "publishes"),
        (ServiceChange::Removed, Some(before), _) => image_and_ports(before, "published"),
        (
            ServiceChange::Recreated(reasons) | ServiceChange::Changed(reasons),
            Some(before),
            Some(after),
        ) => reasons
            .iter()
            .map(|reason| match *reason {
                Reason::Image => format!("image `{}` → `{}`", before.image, after.image),
                Reason::Config if !service.config_files.is_empty() => {
                    let files: Vec<_> = service
                        .config_files
                        .iter()
                        .map(|path| format!("`{}`", display_path(path)))
                        .collect();
                    format!("config {}", files.join(", "))
                }
                Reason::Ports => format!(
                    "ports {}",
                    set_changes(&SetChange::between(
                        &published(&before.ports),
                        &published(&after.ports),
                    ))
                ),
                other => other.to_string(),
            })
            .chain(
                matches!(service.change, ServiceChange::Changed(_))
                    .then(|| "the container is kept".to_string()),
            )
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}

/// Published ports as `host:port→target/protocol`, sorted.
fn published(ports: &[Port]) -> BTreeSet<String> {
    ports.iter().map(port_label).collect()
}

fn port_label(port: &Port) -> String {
    let protocol = match port.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    format!(
        "{}→{}/{protocol}",
        SocketAddr::new(port.host_ip, port.published),
        port.target
    )
}

/// `+added −removed`, each item in backticks.
fn set_changes(changes: &SetChange) -> String {
    changes
        .added
        .iter()
        .map(|item| format!("+`{item}`"))
        .chain(changes.removed.iter().map(|item| format!("−`{item}`")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A file's diff, folded; its fallback names the diff's size instead.
fn file_block(file: &FilePlan, full_plan_at: &str) -> Block {
    let summary = format!("{} ({})", display_path(&file.path), verb(file.change));
    let diff = &file.diff;
    let fence = fence(diff);
    Block {
        text: format!(
            "<details><summary>{summary}</summary>\n\n{fence}diff\n{diff}{fence}\n\n</details>\n\n"
        ),
        fallback: Some(format!(
            "<details><summary>{summary}</summary>\n\nDiff left out ({} lines): see {full_plan_at}.\n\n</details>\n\n",
            diff.lines().count()
        )),
        diagram: false,
    }
}

/// What a file change means from the plan's side (the render is the new state).
fn verb(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
    }
}

/// A code fence longer than any run of backticks in `text`, so it cannot end early.
fn fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// A Mermaid flowchart of a stack: services with their images, published ports
/// as edges from the host (loopback) or the internet, dependencies, networks.
fn mermaid(stack: &Stack) -> String {
    let mut out = String::from("```mermaid\nflowchart LR\n");
    let ports = || {
        stack
            .services
            .iter()
            .flat_map(|s| s.ports.iter().map(move |p| (s, p)))
    };
    for (node, loopback) in [("internet", false), ("host", true)] {
        if ports().any(|(_, p)| p.host_ip.is_loopback() == loopback) {
            let _ = writeln!(out, "    {node}((\"{node}\"))");
        }
    }
    for service in &stack.services {
        let _ = writeln!(
            out,
            "    {}[\"{}<br/>{}\"]",
            mermaid_id("svc", &service.name),
            mermaid_text(&service.name),
            mermaid_text(&service.image)
        );
    }
    for network in &stack.networks {
        let _ = writeln!(
            out,
            "    {}{{{{\"network {}\"}}}}",
            mermaid_id("net", network),
            mermaid_text(network)
        );
    }
    for (service, port) in ports() {
        let from = if port.host_ip.is_loopback() {
            "host"
        } else {
            "internet"
        };
        let _ = writeln!(
            out,
            "    {from} -->|\"{}\"| {}",
            mermaid_text(&port_label(port)),
            mermaid_id("svc", &service.name)
        );
    }
    for service in &stack.services {
        mermaid_links(&mut out, service);
    }
    out.push_str("```\n");
    out
}

/// A service's edges to what it depends on and to its networks.
fn mermaid_links(out: &mut String, service: &Service) {
    let node = mermaid_id("svc", &service.name);
    for dependency in &service.depends_on {
        let _ = writeln!(
            out,
            "    {node} -.->|\"depends on ({})\"| {}",
            if dependency.healthy {
                "healthy"
            } else {
                "started"
            },
            mermaid_id("svc", &dependency.service)
        );
    }
    for network in &service.networks {
        let _ = writeln!(out, "    {node} --- {}", mermaid_id("net", network));
    }
}

/// A node's id: `prefix_name`, with every other character than ASCII letters
/// and digits as `_`.
fn mermaid_id(prefix: &str, name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{prefix}_{name}")
}

/// Text inside a quoted Mermaid label, with its special characters as entities.
fn mermaid_text(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::build;
    use crate::plan::tests::{committed, current, plan_between, rendered, three_environments};

    fn line(plan: &Plan, env: usize) -> String {
        summary(&plan.environments[env])
    }

    #[test]
    fn a_config_change_recreates_only_its_service() {
        let base = rendered(r#""prometheus": { "scrape_interval": 15 },"#);
        let now = rendered(r#""prometheus": { "scrape_interval": 30 },"#);
        let plan = plan_between(&base, now);
        assert_eq!(
            line(&plan, 0),
            "0 to add, 0 to change, 1 to recreate, 0 to remove"
        );
        let markdown = render(&plan);
        assert!(
            markdown.contains("| prometheus | recreated | config `build/test/storage/prometheus/etc/prometheus.yml` |"),
            "{markdown}"
        );
        assert!(markdown.contains("Unchanged: tracker.\n"), "{markdown}");
        assert!(
            markdown.contains("- **prometheus**:\n  - `http://127.0.0.1:9090/` stops answering")
        );
        assert!(
            markdown.contains("| Prometheus | `http://127.0.0.1:9090/` (loopback) | unchanged |")
        );
        // The stack file is the tool's own: its diff would repeat the config hash.
        assert!(!markdown.contains("stack.json"), "{markdown}");
        assert!(!markdown.contains("```mermaid"));
    }

    #[test]
    fn removing_a_service_changes_the_topology() {
        let base = rendered(r#""prometheus": {},"#);
        let now = rendered("");
        let plan = plan_between(&base, now);
        assert_eq!(
            line(&plan, 0),
            "0 to add, 0 to change, 1 to recreate, 1 to remove"
        );
        let markdown = render(&plan);
        assert!(
            markdown.contains("| tracker | recreated | networks |"),
            "{markdown}"
        );
        assert!(markdown.contains("Networks: −`metrics`"), "{markdown}");
        assert!(markdown.contains("```mermaid\nflowchart LR\n"));
        assert!(markdown.contains("internet -->|\"0.0.0.0:6969→6969/udp\"| svc_tracker"));
    }

    #[test]
    fn new_removed_and_unchanged_environments() {
        let plan = three_environments();
        let lines: Vec<_> = (0..3).map(|env| line(&plan, env)).collect();
        assert_eq!(
            lines,
            [
                "new environment: 1 to add, 0 to change, 0 to recreate, 0 to remove",
                "removed environment: 0 to add, 0 to change, 0 to recreate, 1 to remove",
                "no changes"
            ]
        );
    }

    #[test]
    fn a_long_plan_leaves_out_the_largest_diffs_first() {
        let now = rendered("");
        let mut at_base = committed("test", &now);
        at_base.insert("test/big.txt", "x\n".repeat(50_000));
        at_base.insert("test/small.txt", "y\n");
        let plan = build("main", "build", &at_base, vec![current("test", now)], true).unwrap();
        let full = render(&plan);
        assert!(full.len() > 100_000);
        let short = render_within(&plan, 10_000, "the job summary");
        assert!(short.len() <= 10_000);
        assert!(short.contains("The full plan is in the job summary."));
        assert!(short.contains("Diff left out (50003 lines): see the job summary."));
        assert!(
            short.contains("+++ /dev/null\n@@ -1 +0,0 @@\n-y\n"),
            "{short}"
        );
        assert!(short.contains("**test**: files change, no service does"));
        let tiny = render_within(&plan, 100, "x");
        assert!(tiny.len() <= 100 && tiny.ends_with("…(cut)\n"));
    }

    #[test]
    fn fences_outgrow_backticks_in_the_text() {
        assert_eq!(fence("a ``` b"), "````");
        assert_eq!(fence("plain"), "```");
    }

    #[test]
    fn data_loss_leads_the_plan() {
        let base = rendered(r#""prometheus": {},"#);
        let now = rendered(r#""prometheus": { "persist_data": false },"#);
        let markdown = render(&plan_between(&base, now));
        assert!(
            markdown.starts_with("> [!CAUTION]\n> **DATA LOSS.**"),
            "{markdown}"
        );
        assert!(
            markdown.contains(
                "> - **test** `volume-dropped:prometheus_data` (**NOT acknowledged: deploy refuses it**): \
                 `prometheus` no longer mounts volume `prometheus_data`: **volume"
            ),
            "{markdown}"
        );
        let first_heading = markdown.find("## tracker-gitops plan").unwrap();
        assert!(markdown.find("DATA LOSS").unwrap() < first_heading);
        // Acknowledged, it is still shown first; once deployed, the
        // acknowledgement left in is stale.
        let acknowledged = r#""prometheus": { "persist_data": false }, "acknowledge_data_loss": ["volume-dropped:prometheus_data"],"#;
        let markdown = render(&plan_between(&base, rendered(acknowledged)));
        assert!(markdown.contains("(acknowledged)"), "{markdown}");
        let markdown = render(&plan_between(
            &rendered(acknowledged),
            rendered(acknowledged),
        ));
        assert!(
            markdown.starts_with("> [!WARNING]\n> **Stale acknowledgements.**"),
            "{markdown}"
        );
        assert!(!render(&plan_between(&base, rendered(""))).contains("> [!WARNING]"));
    }
}
