use std::path::Path;
use std::time::Duration;

use crate::config::{Config, JobKind, Lookup, Trigger, ValidConfig};

const TABLES: &str = r#"
[[tables]]
name = "raw.orders"
event_time = "ts"
fields = [
  { name = "id", type = "string", required = true },
  { name = "user_id", type = "long" },
  { name = "amount", type = "double" },
  { name = "ts", type = "timestamptz", required = true },
]

[[tables]]
name = "ref.users"
event_time = "updated_at"
fields = [
  { name = "user_id", type = "long" },
  { name = "segment", type = "string" },
  { name = "updated_at", type = "timestamptz" },
]
"#;

const JOBS: &str = r#"
[[jobs]]
name = "hourly"
kind = "window"
input = "cleansed.orders"
output = "curated.hourly"
window = "1h"
aggregates = { orders = "count(*)", revenue = "sum(amount)" }
grace = "5m"

[[jobs]]
name = "clean"
kind = "cleanse"
input = "raw.orders"
output = "cleansed.orders"
key = ["id"]
columns = { amount = "round(amount, 2)" }
rules = ["amount >= 0"]

[[jobs]]
name = "enriched"
kind = "enrich"
input = "cleansed.orders"
output = "curated.orders_by_segment"
dimension = "ref.users"
on = "user_id"
lookup = "as_of"
add = ["segment"]
every = "30s"
"#;

fn validate(text: &str) -> Result<ValidConfig, String> {
    Config::from_toml(text)?.validate(Path::new("/d"))
}

#[test]
fn jobs_come_back_in_dependency_order_with_inherited_time_columns() {
    let v = validate(&format!("{TABLES}{JOBS}")).unwrap();
    let names: Vec<&str> = v.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names[0], "clean", "the cleanse job feeds the other two: {names:?}");
    let hourly = v.jobs.iter().find(|j| j.name == "hourly").unwrap();
    assert_eq!(hourly.depends_on, vec!["clean".to_owned()]);
    assert_eq!(hourly.time_column.as_deref(), Some("ts"), "inherited through the cleanse job");
    assert_eq!(hourly.trigger, Trigger::OnCommit);
    let JobKind::Window { size, hop, grace, retention, .. } = &hourly.kind else { panic!("{:?}", hourly.kind) };
    assert_eq!((*size, *hop, *grace), (Duration::from_secs(3600), Duration::from_secs(3600), Duration::from_secs(300)));
    assert_eq!(*retention, Duration::from_secs(7 * 86_400));
    let enriched = v.jobs.iter().find(|j| j.name == "enriched").unwrap();
    assert_eq!(enriched.trigger, Trigger::Every(Duration::from_secs(30)));
    let JobKind::Enrich { lookup, valid_from, .. } = &enriched.kind else { panic!() };
    assert_eq!((*lookup, valid_from.as_str()), (Lookup::AsOf, "updated_at"));
    assert_eq!(enriched.pipeline(), "job:enriched");
}

#[test]
fn every_mistake_names_the_job_and_the_fix() {
    let cases = [
        (JOBS.replace("input = \"raw.orders\"", "input = \"raw.ordres\""), "jobs[1] (clean)", "raw.ordres"),
        (JOBS.replace("key = [\"id\"]", ""), "jobs[1] (clean)", "needs key"),
        (JOBS.replace("kind = \"cleanse\"", "kind = \"clean\""), "jobs[1] (clean)", "\"cleanse\", \"window\""),
        (JOBS.replace("window = \"1h\"", "window = \"1h\"\nhop = \"25m\""), "jobs[0] (hourly)", "whole number of hops"),
        (JOBS.replace("aggregates = {", "key = [\"id\"]\naggregates = {"), "jobs[0] (hourly)", "'key' does not apply"),
        (JOBS.replace("output = \"curated.hourly\"", "output = \"raw.orders\""), "jobs[0] (hourly)", "[[tables]]"),
        (JOBS.replace("dimension = \"ref.users\"", "dimension = \"ref.nobody\""), "jobs[2] (enriched)", "ref.nobody"),
        (JOBS.replace("every = \"30s\"", "depends_on = [\"nope\"]"), "jobs[2] (enriched)", "depends_on = 'nope'"),
        (
            JOBS.replace("output = \"curated.hourly\"", "output = \"quarantine.hourly\""),
            "jobs[0] (hourly)",
            "Tributary's",
        ),
        (JOBS.replace("columns = { amount", "columns = { id = \"trim(id)\", amount"), "jobs[1] (clean)", "columns.id"),
    ];
    for (jobs, job, says) in cases {
        let err = validate(&format!("{TABLES}{jobs}")).unwrap_err();
        assert!(err.contains(job) && err.contains(says), "{job} / {says}: {err}");
    }
}

#[test]
fn a_cycle_is_refused_with_the_jobs_on_it() {
    let cyclic = r#"
[[jobs]]
name = "a"
kind = "sql"
input = "x.b"
output = "x.a"
sql = "SELECT * FROM x.b"

[[jobs]]
name = "b"
kind = "sql"
input = "x.a"
output = "x.b"
sql = "SELECT * FROM x.a"
"#;
    let err = validate(&format!("{TABLES}{cyclic}")).unwrap_err();
    assert!(err.contains("cycle") && err.contains("a (after b)") && err.contains("b (after a)"), "{err}");
}

#[test]
fn a_window_job_without_an_event_time_asks_for_one() {
    let text = format!("{TABLES}{JOBS}").replace("event_time = \"ts\"\n", "");
    let err = validate(&text).unwrap_err();
    assert!(err.contains("jobs[0] (hourly)") && err.contains("time_column"), "{err}");
}
