//! The shipped Grafana dashboard, Prometheus configuration and alerting rules only
//! name metrics the agent really exports (`ops::metrics::NAMES`), and together cover
//! what an operator watches.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use wackamole::ops::metrics::NAMES;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `wackamole_*` identifiers in a PromQL expression, with histogram suffixes mapped
/// to the histogram's name.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(k) = expr[i..].find("wackamole_") {
        let start = i + k;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let mut name = expr[start..end].to_string();
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && NAMES.contains(&base)
            {
                name = base.to_string();
            }
        }
        out.push(name);
        i = end;
    }
    out
}

fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

#[test]
fn dashboard_queries_name_exported_metrics() {
    let text = std::fs::read_to_string(root().join("examples/grafana/wackamole.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("valid JSON");
    let mut used = BTreeSet::new();
    let all = panels(&dash);
    assert!(all.len() >= 10, "{} panels", all.len());
    for p in all {
        let title = p["title"].as_str().unwrap_or("?");
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no queries");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: target without expr"));
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "{title}: {expr} names no wackamole metric"
            );
            for n in names {
                assert!(
                    NAMES.contains(&n.as_str()),
                    "{title}: {n} is not exported (in {expr})"
                );
                used.insert(n);
            }
        }
    }
    // The list: members, VIP holders, failovers, fence events, drops, latency.
    for need in [
        "wackamole_members",
        "wackamole_vip_owner",
        "wackamole_vips_held",
        "wackamole_failover_seconds",
        "wackamole_fence_events_total",
        "wackamole_datagram_drops_total",
    ] {
        assert!(used.contains(need), "no panel shows {need}");
    }
    let unused: Vec<&&str> = NAMES.iter().filter(|n| !used.contains(**n)).collect();
    assert!(unused.is_empty(), "exported but on no panel: {unused:?}");
}

#[test]
fn prometheus_config_and_rules_parse_and_name_exported_metrics() {
    let text = std::fs::read_to_string(root().join("examples/prometheus.yml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("prometheus.yml parses");
    let job = &docs[0]["scrape_configs"][0];
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    let targets = job["static_configs"][0]["targets"]
        .as_vec()
        .expect("targets");
    assert!(
        targets
            .iter()
            .all(|t| t.as_str().is_some_and(|t| t.ends_with(":9947")))
    );
    let rules_file = docs[0]["rule_files"][0].as_str().expect("rule file");
    let text = std::fs::read_to_string(root().join("examples").join(rules_file)).unwrap();
    let rules = YamlLoader::load_from_str(&text).expect("rules parse");
    let list = rules[0]["groups"][0]["rules"].as_vec().expect("rules");
    assert!(list.len() >= 4);
    for r in list {
        let name = r["alert"].as_str().expect("alert name");
        let expr = r["expr"].as_str().expect("expr");
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{name}");
        for n in names {
            assert!(NAMES.contains(&n.as_str()), "{name}: {n} is not exported");
        }
        assert!(
            !matches!(r["labels"]["severity"], Yaml::BadValue),
            "{name}: severity"
        );
    }
}
