//! `wackamole import PATH`: an original Wackamole (2.1.x) `wackamole.conf` turned
//! into a config file for this agent.
//!
//! The grammar is the original's `config_gram.l`/`config_gram.y`: `#` comments,
//! case-insensitive keywords, `Spread = …`, `SpreadRetryInterval = 5s`, `Group = …`,
//! `LogFacility = …`, `Control = …`, `Mature = 5s`, `Arp-Cache = 90s`,
//! `Balance { AcquisitionsPerRound = N|all  Interval = 4s }`, `Prefer None|ADDR|NAME|
//! { ADDR … }`, `VirtualInterfaces { IF:A/M  { IF:A/M IF:B/M } … }` (also `VIFs`,
//! `VIPs`), `Notify None|arp-cache|{ IF:NET/M [throttle N] [ping]  arp-cache [ping] }`,
//! `RunDynamic LIB:FUNC|PERL::FUNC on up|on down|post up|post down`, `PerlUse`,
//! `PerlUseLib`, `ModuleDir = …`; addresses are `[IF:]A.B.C.D/M[nN]`.
//!
//! Every directive becomes a key of this agent's config file or a comment saying
//! why it has none (Spread → the join list to fill in; Mature/Balance → what this
//! agent does instead; Perl and `.so` hooks → shell hooks). A syntax error is an
//! [`ImportError`] with its line (exit 65).

use std::net::Ipv4Addr;

/// A syntax error, with the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ImportError {
    /// Line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// `[IF:]A.B.C.D/M[nN]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    /// Interface, if given.
    pub iface: Option<String>,
    /// Address.
    pub ip: Ipv4Addr,
    /// Prefix length (`/M`).
    pub mask: u8,
}

impl Addr {
    /// As a VIP of this agent: `IF:A/M`, or `/32` where `A` is the network or
    /// broadcast address of its `/M` (not a usable host address).
    fn as_vip(&self) -> String {
        if crate::core::config::subnet_edge(self.ip.into(), self.mask).is_some() {
            Addr {
                mask: 32,
                ..self.clone()
            }
            .vip()
        } else {
            self.vip()
        }
    }

    fn vip(&self) -> String {
        match &self.iface {
            Some(i) => format!("{i}:{}/{}", self.ip, self.mask),
            None => format!("{}/{}", self.ip, self.mask),
        }
    }

    /// Whether `ip` is inside this address's `/mask` range.
    fn covers(&self, ip: Ipv4Addr) -> bool {
        let m = if self.mask == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.mask))
        };
        u32::from(ip) & m == u32::from(self.ip) & m
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    Eq,
    Word(String),
    Quoted(String),
    Addr(Addr),
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ImportError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let mut rest = raw;
        loop {
            rest = rest.trim_start_matches([' ', '\t', '\r']);
            let Some(c) = rest.chars().next() else { break };
            match c {
                '#' => break,
                '{' => {
                    out.push((Tok::Open, line));
                    rest = &rest[1..];
                }
                '}' => {
                    out.push((Tok::Close, line));
                    rest = &rest[1..];
                }
                '=' => {
                    out.push((Tok::Eq, line));
                    rest = &rest[1..];
                }
                '"' | '\'' => {
                    let end = rest[1..].find(c).ok_or_else(|| ImportError {
                        line,
                        message: "unterminated quoted string".into(),
                    })?;
                    out.push((Tok::Quoted(rest[1..1 + end].to_string()), line));
                    rest = &rest[end + 2..];
                }
                _ => {
                    let end = rest
                        .find([' ', '\t', '\r', '#', '{', '}', '='])
                        .unwrap_or(rest.len());
                    let w = &rest[..end];
                    out.push((parse_word(w, line)?, line));
                    rest = &rest[end..];
                }
            }
        }
    }
    Ok(out)
}

/// A bare word: an address (`[IF:]A.B.C.D/M[nN]`) or a keyword/string.
fn parse_word(w: &str, line: usize) -> Result<Tok, ImportError> {
    let (iface, a) = match w.rsplit_once(':') {
        Some((i, a)) if looks_like_addr(a) => (Some(i), a),
        _ => (None, w),
    };
    if !looks_like_addr(a) {
        return Ok(Tok::Word(w.to_string()));
    }
    let bad = |m: String| ImportError { line, message: m };
    let (ip, mask) = a.split_once('/').expect("looks_like_addr");
    let mask = mask.split(['n', 'N']).next().unwrap_or_default();
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| bad(format!("{w:?}: {ip:?} is not an IPv4 address")))?;
    let mask: u8 = mask
        .parse()
        .ok()
        .filter(|m| *m <= 32)
        .ok_or_else(|| bad(format!("{w:?}: bad mask /{mask}")))?;
    if let Some(i) = iface {
        crate::core::links::validate_ifname(i).map_err(|e| bad(format!("{w:?}: {e}")))?;
    }
    Ok(Tok::Addr(Addr {
        iface: iface.map(str::to_string),
        ip,
        mask,
    }))
}

/// `digits.digits.digits.digits/digits[n digits]`, as the original's lexer.
fn looks_like_addr(s: &str) -> bool {
    let Some((ip, mask)) = s.split_once('/') else {
        return false;
    };
    let parts: Vec<&str> = ip.split('.').collect();
    let digits = |x: &str, max: usize| {
        !x.is_empty() && x.len() <= max && x.bytes().all(|b| b.is_ascii_digit())
    };
    let m: Vec<&str> = mask.splitn(2, ['n', 'N']).collect();
    parts.len() == 4 && parts.iter().all(|p| digits(p, 3)) && m.iter().all(|p| digits(p, 2))
}

/// What the original file says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Original {
    /// `Spread = …`.
    pub spread: Option<String>,
    /// `SpreadRetryInterval`, seconds.
    pub spread_retry: Option<u64>,
    /// `Group = …`.
    pub group: Option<String>,
    /// `LogFacility = …`.
    pub log: Option<String>,
    /// `Control = …`.
    pub control: Option<String>,
    /// `Mature`, seconds.
    pub mature: Option<u64>,
    /// `Arp-Cache`, seconds.
    pub arp_cache: Option<u64>,
    /// `Balance { AcquisitionsPerRound }`: `None` for `all`.
    pub per_round: Option<Option<u32>>,
    /// `Balance { Interval }`, seconds.
    pub balance_interval: Option<u64>,
    /// `Prefer` entries (`None` entries dropped).
    pub prefer: Vec<Addr>,
    /// `Prefer NAME` (host names the original never resolved).
    pub prefer_names: Vec<String>,
    /// Whether `Prefer None` was given.
    pub prefer_none: bool,
    /// `VirtualInterfaces`: each group's addresses.
    pub vifs: Vec<Vec<Addr>>,
    /// `Notify` ranges with throttle (per second, 0 = none) and ping.
    pub notify: Vec<(Addr, u32, bool)>,
    /// `Notify … arp-cache`.
    pub notify_arp_cache: bool,
    /// `RunDynamic` (function, when).
    pub run_dynamic: Vec<(String, String)>,
    /// `PerlUse`, `PerlUseLib`, `ModuleDir`.
    pub perl: Vec<String>,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    last_line: usize,
}

fn kw(t: &Tok, k: &str) -> bool {
    matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case(k))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.0)
    }

    fn line(&self) -> usize {
        self.toks.get(self.at).map_or(self.last_line, |t| t.1)
    }

    fn err<T>(&self, m: impl Into<String>) -> Result<T, ImportError> {
        Err(ImportError {
            line: self.line(),
            message: m.into(),
        })
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).map(|t| t.0.clone());
        self.at += 1;
        t
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ImportError> {
        match self.peek() {
            Some(t) if *t == want => {
                self.at += 1;
                Ok(())
            }
            Some(t) => self.err(format!("expected {what}, found {}", show(t))),
            None => self.err(format!("expected {what}, found the end of the file")),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, ImportError> {
        match self.next() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => Ok(w),
            Some(t) => {
                self.at -= 1;
                self.err(format!("expected {what}, found {}", show(&t)))
            }
            None => self.err(format!("expected {what}, found the end of the file")),
        }
    }

    /// `5s`, `2m`, `1h` (seconds).
    fn time(&mut self, what: &str) -> Result<u64, ImportError> {
        let s = self.string(what)?;
        let unit = s.chars().last().unwrap_or(' ');
        let n = &s[..s.len() - unit.len_utf8().min(s.len())];
        let mult = match unit {
            's' | 'S' => 1,
            'm' | 'M' => 60,
            'h' | 'H' => 3600,
            _ => 0,
        };
        match n.parse::<u64>() {
            Ok(v) if mult > 0 && !n.is_empty() => Ok(v * mult),
            _ => {
                self.at -= 1;
                self.err(format!(
                    "{what}: {s:?} is not a time interval (like 5s, 2m)"
                ))
            }
        }
    }

    fn settings(&mut self) -> Result<Original, ImportError> {
        let mut o = Original::default();
        while let Some(t) = self.peek().cloned() {
            let Tok::Word(w) = &t else {
                return self.err(format!("expected a directive, found {}", show(&t)));
            };
            self.at += 1;
            match w.to_ascii_lowercase().as_str() {
                "spread" => {
                    self.expect(Tok::Eq, "=")?;
                    o.spread = Some(self.string("the Spread daemon")?);
                }
                "spreadretryinterval" => {
                    self.expect(Tok::Eq, "=")?;
                    o.spread_retry = Some(self.time("SpreadRetryInterval")?);
                }
                "group" => {
                    self.expect(Tok::Eq, "=")?;
                    o.group = Some(self.string("a group name")?);
                }
                "logfacility" => {
                    self.expect(Tok::Eq, "=")?;
                    o.log = Some(self.string("a log facility")?);
                }
                "control" => {
                    self.expect(Tok::Eq, "=")?;
                    o.control = Some(self.string("a control socket")?);
                }
                "mature" => {
                    self.expect(Tok::Eq, "=")?;
                    o.mature = Some(self.time("Mature")?);
                }
                "arp-cache" => {
                    self.expect(Tok::Eq, "=")?;
                    o.arp_cache = Some(self.time("Arp-Cache")?);
                }
                "moduledir" => {
                    self.expect(Tok::Eq, "=")?;
                    let d = self.string("a directory")?;
                    o.perl.push(format!("ModuleDir = {d}"));
                }
                "perluse" => {
                    let m = self.string("a Perl module")?;
                    o.perl.push(format!("PerlUse {m}"));
                }
                "perluselib" => {
                    let m = self.string("a Perl library path")?;
                    o.perl.push(format!("PerlUseLib {m}"));
                }
                "rundynamic" => {
                    let f = self.string("a function (lib.so:func or Module::func)")?;
                    let a = self.string("on up, on down, post up or post down")?;
                    let b = self.string("up or down")?;
                    let when = format!("{} {}", a.to_ascii_lowercase(), b.to_ascii_lowercase());
                    if !["on up", "on down", "post up", "post down"].contains(&when.as_str()) {
                        self.at -= 1;
                        return self.err(format!(
                            "RunDynamic: {when:?} is not one of on up, on down, post up, post down"
                        ));
                    }
                    o.run_dynamic.push((f, when));
                }
                "balance" => self.balance(&mut o)?,
                "prefer" => self.prefer(&mut o)?,
                "notify" => self.notify(&mut o)?,
                "virtualinterfaces" | "vifs" | "vips" => self.vifs(&mut o)?,
                _ => {
                    self.at -= 1;
                    return self.err(format!("unknown directive {w:?}"));
                }
            }
        }
        Ok(o)
    }

    fn balance(&mut self, o: &mut Original) -> Result<(), ImportError> {
        self.expect(Tok::Open, "{")?;
        let mut any = false;
        loop {
            match self.next() {
                Some(Tok::Close) if any => return Ok(()),
                Some(t) if kw(&t, "AcquisitionsPerRound") => {
                    self.expect(Tok::Eq, "=")?;
                    let v = self.string("a number or all")?;
                    o.per_round = Some(if v.eq_ignore_ascii_case("all") {
                        None
                    } else {
                        match v.parse() {
                            Ok(n) => Some(n),
                            Err(_) => {
                                self.at -= 1;
                                return self.err(format!(
                                    "AcquisitionsPerRound: {v:?} is not a number or all"
                                ));
                            }
                        }
                    });
                }
                Some(t) if kw(&t, "Interval") => {
                    self.expect(Tok::Eq, "=")?;
                    o.balance_interval = Some(self.time("Interval")?);
                }
                Some(t) => {
                    self.at -= 1;
                    return self.err(format!(
                        "Balance: expected AcquisitionsPerRound or Interval, found {}",
                        show(&t)
                    ));
                }
                None => return self.err("Balance: missing }"),
            }
            any = true;
        }
    }

    fn prefer(&mut self, o: &mut Original) -> Result<(), ImportError> {
        match self.next() {
            Some(t) if kw(&t, "none") => o.prefer_none = true,
            Some(Tok::Addr(a)) => o.prefer.push(a),
            Some(Tok::Open) => {
                let mut any = false;
                loop {
                    match self.next() {
                        Some(Tok::Addr(a)) => o.prefer.push(a),
                        Some(Tok::Close) if any => break,
                        Some(t) => {
                            self.at -= 1;
                            return self
                                .err(format!("Prefer: expected an address, found {}", show(&t)));
                        }
                        None => return self.err("Prefer: missing }"),
                    }
                    any = true;
                }
            }
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => o.prefer_names.push(w),
            Some(t) => {
                self.at -= 1;
                return self.err(format!(
                    "Prefer: expected None, an address or {{ … }}, found {}",
                    show(&t)
                ));
            }
            None => return self.err("Prefer: expected None, an address or { … }"),
        }
        Ok(())
    }

    fn notify(&mut self, o: &mut Original) -> Result<(), ImportError> {
        match self.next() {
            Some(t) if kw(&t, "none") => return Ok(()),
            Some(t) if kw(&t, "arp-cache") => {
                o.notify_arp_cache = true;
                return Ok(());
            }
            Some(Tok::Open) => {}
            Some(t) => {
                self.at -= 1;
                return self.err(format!(
                    "Notify: expected None, arp-cache or {{ … }}, found {}",
                    show(&t)
                ));
            }
            None => return self.err("Notify: expected None, arp-cache or { … }"),
        }
        let mut any = false;
        loop {
            match self.next() {
                Some(Tok::Close) if any => return Ok(()),
                Some(Tok::Addr(a)) => {
                    let mut throttle = 0;
                    if self.peek().is_some_and(|t| kw(t, "throttle")) {
                        self.at += 1;
                        let n = self.string("a rate per second")?;
                        throttle = match n.parse() {
                            Ok(v) => v,
                            Err(_) => {
                                self.at -= 1;
                                return self.err(format!("throttle: {n:?} is not a number"));
                            }
                        };
                    }
                    let ping = self.peek().is_some_and(|t| kw(t, "ping"));
                    if ping {
                        self.at += 1;
                    }
                    o.notify.push((a, throttle, ping));
                }
                Some(t) if kw(&t, "arp-cache") => {
                    o.notify_arp_cache = true;
                    if self.peek().is_some_and(|t| kw(t, "ping")) {
                        self.at += 1;
                    }
                }
                Some(t) => {
                    self.at -= 1;
                    return self.err(format!(
                        "Notify: expected IF:A.B.C.D/M or arp-cache, found {}",
                        show(&t)
                    ));
                }
                None => return self.err("Notify: missing }"),
            }
            any = true;
        }
    }

    fn vifs(&mut self, o: &mut Original) -> Result<(), ImportError> {
        self.expect(Tok::Open, "{")?;
        let mut any = false;
        loop {
            match self.next() {
                Some(Tok::Close) if any => return Ok(()),
                Some(Tok::Addr(a)) => o.vifs.push(vec![a]),
                Some(Tok::Open) => {
                    let mut g = Vec::new();
                    loop {
                        match self.next() {
                            Some(Tok::Addr(a)) => g.push(a),
                            Some(Tok::Close) if !g.is_empty() => break,
                            Some(t) => {
                                self.at -= 1;
                                return self.err(format!(
                                    "VirtualInterfaces: expected IF:A.B.C.D/M, found {}",
                                    show(&t)
                                ));
                            }
                            None => return self.err("VirtualInterfaces: missing }"),
                        }
                    }
                    o.vifs.push(g);
                }
                Some(t) => {
                    self.at -= 1;
                    return self.err(format!(
                        "VirtualInterfaces: expected IF:A.B.C.D/M or {{ … }}, found {}",
                        show(&t)
                    ));
                }
                None => return self.err("VirtualInterfaces: missing }"),
            }
            any = true;
        }
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Open => "{".into(),
        Tok::Close => "}".into(),
        Tok::Eq => "=".into(),
        Tok::Word(w) => format!("{w:?}"),
        Tok::Quoted(w) => format!("\"{w}\""),
        Tok::Addr(a) => a.vip(),
    }
}

/// Parses an original `wackamole.conf`.
pub fn parse(text: &str) -> Result<Original, ImportError> {
    let toks = lex(text)?;
    let last_line = text.lines().count().max(1);
    let mut p = Parser {
        toks,
        at: 0,
        last_line,
    };
    let o = p.settings()?;
    if o.vifs.is_empty() {
        return Err(ImportError {
            line: last_line,
            message: "no VirtualInterfaces: there are no VIPs to carry over".into(),
        });
    }
    Ok(o)
}

/// What `import` needs besides the file.
#[derive(Debug, Clone)]
pub struct Target {
    /// This node's name.
    pub node_name: String,
    /// The key file to name (`None`: `insecure = true`, with a warning comment).
    pub key_file: Option<String>,
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A comment line as TOML takes it: no control characters but tab (each becomes
/// U+FFFD).
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// The config file for this agent, with a comment on every directive that has no
/// equivalent or means something else here.
pub fn render(o: &Original, source: &str, t: &Target) -> String {
    let mut f = String::new();
    let mut line = |s: String| {
        f.push_str(&comment_safe(&s));
        f.push('\n');
    };
    line(format!(
        "# Imported from {source} (an original Wackamole configuration) by `wackamole import`."
    ));
    line("# Check it with `wackamole check-config --config FILE`; run it with `wackamole run --config FILE`.".into());
    line("# Every node runs this file with its own node-name (and its own bind address).".into());
    line(String::new());
    line(format!("node-name = {}", q(&t.node_name)));
    line(String::new());
    line(
        "# Spread: this agent needs no Spread daemon; the nodes gossip directly (UDP 7946).".into(),
    );
    if let Some(s) = &o.spread {
        line(format!("# was: Spread = {s}"));
    }
    if let Some(r) = o.spread_retry {
        line(format!(
            "# was: SpreadRetryInterval = {r}s (joining is retried on its own)"
        ));
    }
    if let Some(g) = &o.group {
        line(format!(
            "# was: Group = {g} (clusters are kept apart by their key and join list instead)"
        ));
    }
    line("# Fill in every node's address, the same list on every node:".into());
    line(
        "join = []  # e.g. [\"192.168.1.11:7946\", \"192.168.1.12:7946\", \"192.168.1.13:7946\"]"
            .into(),
    );
    line(
        "# The voter set (node names), the same on every node; three or more for safety under"
            .into(),
    );
    line("# any partition (a third machine may be a witness that holds nothing):".into());
    line(format!(
        "voters = [{}]  # add the other nodes' names",
        q(&t.node_name)
    ));
    match &t.key_file {
        Some(k) => line(format!("key-file = {}", q(k))),
        None => {
            line("# The cluster secret (the original had none: Spread's group was open). Make one with".into());
            line("#   head -c 32 /dev/urandom | base64 > /etc/wackamole.key; chmod 600 /etc/wackamole.key".into());
            line("# and replace the next line with: key-file = \"/etc/wackamole.key\"".into());
            line("insecure = true".into());
        }
    }
    line(String::new());
    line("# VirtualInterfaces: each set is a group that always moves together.".into());
    // An address listed twice (the original's man page sample does) is carried once.
    let mut seen = std::collections::BTreeSet::new();
    let mut vifs: Vec<Vec<Addr>> = Vec::new();
    for g in &o.vifs {
        let mut kept = Vec::new();
        for a in g {
            if seen.insert(a.ip) {
                kept.push(a.clone());
            } else {
                line(format!(
                    "# {}: listed more than once; carried over once",
                    a.vip()
                ));
            }
        }
        if !kept.is_empty() {
            vifs.push(kept);
        }
    }
    for a in o.vifs.iter().flatten() {
        if let Some(what) = crate::core::config::subnet_edge(a.ip.into(), a.mask) {
            line(format!(
                "# {}: {} is the {what} address of its /{}; carried over as a /32 (a host address)",
                a.vip(),
                a.ip,
                a.mask
            ));
        }
    }
    let singles: Vec<String> = vifs
        .iter()
        .filter(|g| g.len() == 1)
        .map(|g| q(&g[0].as_vip()))
        .collect();
    let groups: Vec<String> = vifs
        .iter()
        .filter(|g| g.len() > 1)
        .map(|g| {
            format!(
                "[{}]",
                g.iter()
                    .map(|a| q(&a.as_vip()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    if !singles.is_empty() {
        line(format!("vip = [{}]", singles.join(", ")));
    }
    if !groups.is_empty() {
        line(format!("vip-group = [{}]", groups.join(", ")));
    }
    line("# The interface of an address without one (every address above names its own):".into());
    line("# interface = \"eth0\"".into());
    line(String::new());
    if o.prefer_none || (o.prefer.is_empty() && o.prefer_names.is_empty()) {
        line("# Prefer None: the assignment spreads the groups evenly (weighted rendezvous hashing).".into());
    }
    let mut prefers = Vec::new();
    for p in &o.prefer {
        let hit: Vec<Ipv4Addr> = o
            .vifs
            .iter()
            .flat_map(|g| g.first())
            .map(|a| a.ip)
            .filter(|ip| p.covers(*ip))
            .collect();
        if hit.is_empty() {
            line(format!(
                "# was: Prefer {}: no VIP group is in that range",
                p.vip()
            ));
        }
        for ip in hit {
            let e = format!("{ip}={}", t.node_name);
            if !prefers.contains(&e) {
                prefers.push(e);
            }
        }
    }
    for n in &o.prefer_names {
        line(format!(
            "# was: Prefer {n}: a host name (the original never resolved these); name the VIP instead"
        ));
    }
    if !prefers.is_empty() {
        line("# Prefer: this node holds these groups while it is eligible.".into());
        line(format!(
            "prefer = [{}]",
            prefers.iter().map(|p| q(p)).collect::<Vec<_>>().join(", ")
        ));
    }
    line(String::new());
    if let Some(m) = o.mature {
        line(format!(
            "# Mature = {m}s: a (re)starting node waits before it takes VIPs; here the fail-back delay."
        ));
        line(format!("failback-delay = \"{m}s\""));
    }
    if o.per_round.is_some() || o.balance_interval.is_some() {
        let per = match o.per_round {
            Some(Some(n)) => n.to_string(),
            Some(None) => "all".into(),
            None => "default".into(),
        };
        let iv = o
            .balance_interval
            .map_or("default".into(), |s| format!("{s}s"));
        line(format!(
            "# Balance {{ AcquisitionsPerRound = {per}, Interval = {iv} }}: no balancing rounds here. The"
        ));
        line(
            "# assignment is balanced and sticky at all times: a join or leave moves only that"
                .into(),
        );
        line("# node's share, and a moved group is handed over in milliseconds, each under the lease.".into());
    }
    let mut notify = Vec::new();
    for (a, throttle, ping) in &o.notify {
        let net = if a.mask >= 22 {
            let m = if a.mask == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(a.mask))
            };
            let base = Ipv4Addr::from(u32::from(a.ip) & m);
            if a.mask == 32 {
                a.ip.to_string()
            } else {
                format!("{base}/{}", a.mask)
            }
        } else {
            line(format!(
                "# was: Notify {}: a range wider than /22 is not carried over; list the neighbours that matter",
                a.vip()
            ));
            continue;
        };
        if *throttle > 0 {
            line(format!(
                "# was: Notify {} throttle {throttle}: sent at once here (no throttle)",
                a.vip()
            ));
        }
        if *ping {
            line(format!(
                "# was: Notify {} ping: no ping here (a directed ARP reply only)",
                a.vip()
            ));
        }
        if let Some(i) = &a.iface {
            line(format!(
                "# Notify {}: on interface {i} in the original; here a directed ARP reply from each VIP's own interface",
                a.vip()
            ));
        }
        notify.push(q(&net));
    }
    if !notify.is_empty() {
        line("# Notify: directed ARP replies to these neighbours after each takeover.".into());
        line(format!("notify = [{}]", notify.join(", ")));
    }
    if o.notify_arp_cache || o.arp_cache.is_some() {
        let every = o
            .arp_cache
            .map_or(String::new(), |s| format!(" (Arp-Cache = {s}s)"));
        line(format!(
            "# was: Notify arp-cache{every}: shared ARP caches are not carried over; gratuitous ARP and"
        ));
        line("# unsolicited NA go out on every takeover, and `notify` names neighbours that ignore them.".into());
    }
    if let Some(c) = &o.control {
        line(format!(
            "# was: Control = {c}: here an HTTP listener (metrics-addr, default 127.0.0.1:9947) with"
        ));
        line("# `wackamole status`, `drain`, `undrain` and `reload`.".into());
    }
    if let Some(l) = &o.log {
        line(format!(
            "# was: LogFacility = {l}: this agent logs to stderr (journald under systemd); log-format = \"json\" for machines."
        ));
    }
    for (func, when) in &o.run_dynamic {
        let key = match when.as_str() {
            "on up" => "on-acquire",
            "on down" => "on-release",
            _ => "on-round",
        };
        line(format!(
            "# was: RunDynamic {func} {when}: Perl and shared-library hooks are not loaded here; run a"
        ));
        line(
            "# shell command instead (WACKAMOLE_VIP, WACKAMOLE_GROUP, … in its environment):"
                .to_string(),
        );
        line(format!("# {key} = \"/usr/local/bin/your-hook\""));
    }
    for p in &o.perl {
        line(format!(
            "# was: {p}: no embedded Perl; see the shell hooks above"
        ));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original's sample `wackamole.conf`, written from its grammar.
    pub const SAMPLE: &str = "\
# The Spread daemon we are going to connect to.
Spread = 4803@127.0.0.1
SpreadRetryInterval = 5s
Group = wack1
Control = /var/run/wack.it
#PerlUseLib .
#RunDynamic funcs:killhup on up
Prefer None
VirtualInterfaces {
    { eth0:192.168.10.2/32 }
    { eth0:192.168.10.3/32 eth1:192.0.2.3/32 }
    eth0:192.168.10.4/32
}
Arp-Cache = 90s
Notify {
    eth0:192.168.10.1/32
    eth0:192.168.10.0/24 throttle 128
    eth1:10.0.0.10/32 ping
    arp-cache
}
balance {
    AcquisitionsPerRound = all
    interval = 4s
}
mature = 5s
";

    fn target() -> Target {
        Target {
            node_name: "web1".into(),
            key_file: None,
        }
    }

    #[test]
    fn the_sample_parses_into_groups_notify_and_timers() {
        let o = parse(SAMPLE).unwrap();
        assert_eq!(o.vifs.len(), 3);
        assert_eq!(o.vifs[1].len(), 2);
        assert_eq!(o.vifs[1][1].iface.as_deref(), Some("eth1"));
        assert_eq!(o.mature, Some(5));
        assert_eq!(o.arp_cache, Some(90));
        assert_eq!(o.per_round, Some(None));
        assert_eq!(o.balance_interval, Some(4));
        assert!(o.prefer_none && o.notify_arp_cache);
        assert_eq!(o.notify.len(), 3);
        assert_eq!(o.notify[1].1, 128);
        assert!(o.notify[2].2);
        let out = render(&o, "wackamole.conf", &target());
        assert!(
            out.contains("vip = [\"eth0:192.168.10.2/32\", \"eth0:192.168.10.4/32\"]"),
            "{out}"
        );
        assert!(
            out.contains("vip-group = [[\"eth0:192.168.10.3/32\", \"eth1:192.0.2.3/32\"]]"),
            "{out}"
        );
        assert!(
            out.contains("notify = [\"192.168.10.1\", \"192.168.10.0/24\", \"10.0.0.10\"]"),
            "{out}"
        );
        assert!(out.contains("failback-delay = \"5s\""), "{out}");
        assert!(out.contains("# was: Spread = 4803@127.0.0.1"), "{out}");
        assert!(out.contains("throttle 128"), "{out}");
        // Every line is TOML or a comment.
        let doc: toml::Table = out.parse().expect("valid TOML");
        assert_eq!(doc["node-name"].as_str(), Some("web1"));
    }

    #[test]
    fn prefer_ranges_hooks_and_perl_become_keys_or_comments() {
        let text = "Spread = 4803\nPrefer { eth0:192.168.10.0/24 }\nPrefer 10.9.9.9/32\nPrefer dbhost\n\
                    VIPs { eth0:192.168.10.7/24n24 eth0:10.1.1.1/32 }\n\
                    RunDynamic funcs.so:killhup post up\nRunDynamic example::dump_it on down\n\
                    PerlUseLib /usr/lib/wack\nPerlUse example\nModuleDir = /usr/lib/wack\n\
                    Notify arp-cache\nLogFacility = daemon\n";
        let o = parse(text).unwrap();
        let out = render(&o, "x.conf", &target());
        assert!(out.contains("prefer = [\"192.168.10.7=web1\"]"), "{out}");
        assert!(out.contains("Prefer 10.9.9.9/32: no VIP group"), "{out}");
        assert!(out.contains("Prefer dbhost"), "{out}");
        assert!(out.contains("# on-round = "), "{out}");
        assert!(out.contains("# on-release = "), "{out}");
        assert!(out.contains("PerlUse example"), "{out}");
        assert!(out.contains("Notify arp-cache"), "{out}");
        let _: toml::Table = out.parse().expect("valid TOML");
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let cases = [
            (
                "Spread = 4803\nVirtualInterfaces {\n eth0:10.0.0.1/32\n",
                3,
                "missing }",
            ),
            ("Spread 4803\n", 1, "expected ="),
            ("Bogus = 1\n", 1, "unknown directive"),
            (
                "VirtualInterfaces { eth0:10.0.0.300/32 }\n",
                1,
                "not an IPv4",
            ),
            ("VirtualInterfaces { eth0:10.0.0.3/40 }\n", 1, "bad mask"),
            ("Mature = 5\u{e9}\n", 1, "time interval"),
            ("Mature = \u{e9}\n", 1, "time interval"),
            (
                "VIPs { eth0:10.0.0.1/32 }\nPrefer { \u{2603} }\n",
                2,
                "Prefer",
            ),
            (
                "Mature = soon\nVIPs { eth0:10.0.0.1/32 }\n",
                1,
                "time interval",
            ),
            (
                "balance {\n  AcquisitionsPerRound = lots\n}\n",
                2,
                "not a number",
            ),
            ("RunDynamic f.so:g after up\n", 1, "RunDynamic"),
            ("Notify { eth0:10.0.0.1/32 throttle fast }\n", 1, "throttle"),
            ("Spread = \"4803\n", 1, "unterminated"),
            ("Spread = 4803\n", 1, "no VirtualInterfaces"),
        ];
        for (text, line, what) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn control_characters_stay_out_of_the_output() {
        // Found by the fuzzer: a NUL in a Spread value went into a comment.
        let text = "Spread = 48\u{0}03\nGroup = \"a\u{7f}b\"\nPrefer \"h\u{1b}st\"\nVIPs { eth0:10.0.0.1/32 }\n";
        let o = parse(text).unwrap();
        let out = render(
            &o,
            "x\u{0}.conf",
            &Target {
                node_name: "n1".into(),
                key_file: Some("/k\u{1}\"ey".into()),
            },
        );
        let doc: toml::Table = out.parse().expect("valid TOML");
        assert_eq!(doc["key-file"].as_str(), Some("/k\u{1}\"ey"));
    }

    proptest::proptest! {
        #[test]
        fn any_input_parses_or_names_a_line(text in "(\\PC|[\\x00-\\x1f\\x7f]){0,300}") {
            match parse(&text) {
                Err(e) => proptest::prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1)),
                Ok(o) => {
                    let out = render(&o, "p", &target());
                    proptest::prop_assert!(out.parse::<toml::Table>().is_ok(), "{}", out);
                }
            }
        }

        #[test]
        fn token_soup_parses_or_names_a_line(
            words in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{", "}", "=", "VIPs", "Notify", "Prefer", "None", "arp-cache", "throttle",
                    "ping", "Balance", "AcquisitionsPerRound", "all", "Interval", "5s", "9",
                    "eth0:10.0.0.1/32", "10.0.0.0/24n24", "Mature", "RunDynamic", "on", "up",
                    "post", "\n", "#", "\"", "x:1.2.3.4/33",
                ]),
                0..60,
            )
        ) {
            let text = words.join(" ");
            if let Ok(o) = parse(&text) {
                let out = render(&o, "p", &target());
                proptest::prop_assert!(out.parse::<toml::Table>().is_ok(), "{}", out);
            }
        }
    }
}
