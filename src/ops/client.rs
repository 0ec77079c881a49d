//! The client side of `wackamole status`, `drain`, `undrain` and `reload`: plain HTTP/1.0 to
//! the agent's listener, no runtime needed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long to wait for the agent to accept or answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// One request; returns (status code, body).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| {
        format!("cannot reach the agent at {addr}: {e} (is it running with --metrics-addr {addr}?)")
    })?;
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: wackamole-cli\r\n{auth}Content-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    Ok((code, body.to_string()))
}

/// Fetches and parses `/status`.
pub fn fetch_status(addr: SocketAddr) -> Result<Value, String> {
    let (code, body) = request(addr, "GET", "/status", None)?;
    if code != 200 {
        return Err(format!("{addr}: /status answered {code}: {}", body.trim()));
    }
    serde_json::from_str(&body).map_err(|e| format!("{addr}: /status is not JSON: {e}"))
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Array(a) => {
            if a.is_empty() {
                "-".into()
            } else {
                a.iter().map(s).collect::<Vec<_>>().join(",")
            }
        }
        other => other.to_string(),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, x)| format!("{x:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The cluster table printed by `wackamole status`.
pub fn render(doc: &Value) -> String {
    let node = &doc["node"];
    let q = &doc["quorum"];
    let mut out = format!(
        "node {} ({}{}{}) · cluster {} · quorum {} {}/{} voters heard (need {})\n\n",
        s(&node["name"]),
        if node["ready"] == Value::Bool(true) {
            "ready"
        } else {
            "not ready"
        },
        if node["healthy"] == Value::Bool(false) {
            ", unhealthy"
        } else {
            ""
        },
        if node["draining"] == Value::Bool(true) {
            ", draining"
        } else {
            ""
        },
        s(&node["cluster_id"]),
        s(&q["mode"]),
        s(&q["voters_heard"]),
        q["voters"].as_array().map(Vec::len).unwrap_or(0),
        s(&q["q"]),
    );
    let mut rows = vec![vec![
        "MEMBER".to_string(),
        "STATE".into(),
        "INC".into(),
        "ELIGIBLE".into(),
        "DRAINING".into(),
        "WEIGHT".into(),
        "CONFIG".into(),
        "HOLDS".into(),
    ]];
    for m in doc["members"].as_array().into_iter().flatten() {
        let me = m["self"] == Value::Bool(true);
        let differs: Vec<&str> = m["config_differs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        rows.push(vec![
            format!("{}{}", s(&m["name"]), if me { " *" } else { "" }),
            s(&m["state"]),
            s(&m["incarnation"]),
            s(&m["eligible"]),
            s(&m["draining"]),
            s(&m["weight"]),
            match (&m["config_differs"], differs.is_empty()) {
                (Value::Null, _) => "-".into(),
                (_, true) => "same".into(),
                (_, false) => format!("differs: {}", differs.join(",")),
            },
            s(&m["held"]),
        ]);
    }
    out.push_str(&table(&rows));
    let drifting = doc["drift"]["members"].as_array().map_or(0, Vec::len);
    if drifting > 0 {
        out.push_str(&format!(
            "\nconfiguration drift: {drifting} member(s) differ from this node; {} distinct VIP pools among live members\n",
            s(&doc["drift"]["pool_digests"])
        ));
    }
    out.push('\n');
    let mut rows = vec![vec![
        "VIP".to_string(),
        "OWNER".into(),
        "HOLDERS".into(),
        "PHASE (here)".into(),
        "FOR".into(),
    ]];
    for g in doc["groups"].as_array().into_iter().flatten() {
        rows.push(vec![
            s(&g["vips"]),
            s(&g["owner"]),
            s(&g["holders"]),
            s(&g["phase"]),
            format!("{:.1}s", g["phase_for_s"].as_f64().unwrap_or(0.0)),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

/// Groups this node holds, by the status document.
pub fn own_held(doc: &Value) -> usize {
    doc["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["self"] == Value::Bool(true))
        .and_then(|m| m["held"].as_array())
        .map(Vec::len)
        .unwrap_or(0)
}

/// Drains (or undrains) the agent; with a non-zero `wait`, waits until a drained
/// node holds nothing. Returns the line to print.
pub fn drain(
    addr: SocketAddr,
    on: bool,
    token: Option<&str>,
    wait: Duration,
) -> Result<String, String> {
    let path = if on { "/drain" } else { "/undrain" };
    let started = Instant::now();
    let (code, body) = request(addr, "POST", path, token)?;
    if code != 200 {
        return Err(format!("{addr}{path}: {code}: {}", body.trim()));
    }
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("{addr}{path}: not JSON: {e}"))?;
    let node = s(&v["node"]);
    if !on {
        return Ok(format!(
            "{node}: undrained; it takes VIPs again as the assignment says"
        ));
    }
    let mut held = v["held"].as_array().map(Vec::len).unwrap_or(0);
    let before = held;
    let deadline = started + wait;
    while held > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        held = own_held(&fetch_status(addr)?);
    }
    if held > 0 {
        return Err(format!(
            "{node}: drained, but still holds {held} VIP group(s) after {wait:?} (no eligible node to take them?)"
        ));
    }
    Ok(format!(
        "{node}: drained; {before} VIP group(s) moved away in {:.2}s",
        started.elapsed().as_secs_f64()
    ))
}

/// How `wackamole reload` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadError {
    /// The agent re-read its configuration and refused it; nothing changed.
    Refused(String),
    /// The agent could not be asked.
    Unreachable(String),
}

/// `POST /reload`: waits for the agent's verdict. Ok: what changed (one line).
pub fn reload(addr: SocketAddr, token: Option<&str>) -> Result<String, ReloadError> {
    let (code, body) = request(addr, "POST", "/reload", token).map_err(ReloadError::Unreachable)?;
    let v: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => {
            return Err(ReloadError::Unreachable(format!(
                "{addr}/reload: {code}: {}",
                body.trim()
            )));
        }
    };
    let node = s(&v["node"]);
    match (code, v["result"].as_str()) {
        (200, Some("unchanged")) => Ok(format!("{node}: reloaded; nothing changed")),
        (200, _) => {
            let changes: Vec<&str> = v["changes"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Ok(format!("{node}: reloaded; applied: {}", changes.join("; ")))
        }
        (409, _) => Err(ReloadError::Refused(format!(
            "{node}: reload refused, nothing changed: {}",
            s(&v["reason"])
        ))),
        _ => Err(ReloadError::Unreachable(format!(
            "{addr}/reload: {code}: {}",
            body.trim()
        ))),
    }
}
