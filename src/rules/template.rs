//! The Go-template subset Prometheus rule labels and annotations use: `$labels.x`,
//! `$value`, `.Labels.x`, `.Value`, pipelines, and the functions `humanize`,
//! `humanizePercentage`, `humanizeDuration` and `printf`. Anything else is rejected
//! when the rule file loads.

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// The text as written, for those who show a rule rather than evaluate it.
    source: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Vec<Vec<Arg>>),
}

#[derive(Debug, Clone)]
enum Arg {
    Func(String),
    Value,
    Labels,
    Label(String),
    Str(String),
    Num(f64),
}

enum Val {
    Str(String),
    Num(f64),
    Map,
}

const FUNCS: &[&str] = &[
    "humanize",
    "humanizePercentage",
    "humanizeDuration",
    "printf",
];

/// Why a template is refused; each names the text it could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without its `}}` (the whole template).
    #[error("template: unclosed action in {0:?}")]
    Unclosed(String),
    /// `{{ }}` or `{{ a | }}` (the action).
    #[error("template: empty command in {{{{{0}}}}}")]
    EmptyCommand(String),
    /// Arguments after something that is not a function (the action).
    #[error("template: unsupported construct {{{{{0}}}}}")]
    Pipeline(String),
    /// A string without its closing quote (the command).
    #[error("template: unterminated string in {0:?}")]
    Unterminated(String),
    /// A word that is no value, label or supported function (`if`, `range`, ...).
    #[error("unsupported construct: template `{0}`")]
    Unsupported(String),
}

impl Template {
    /// The template as written in the rule file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Parses `text`; the error names the unsupported construct.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut nodes = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("{{") {
            let mut before = &rest[..i];
            let after = &rest[i + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(text.to_string()))?;
            let mut inner = &after[..end];
            rest = &after[end + 2..];
            if let Some(s) = inner.strip_prefix("- ") {
                inner = s;
                before = before.trim_end();
            }
            if let Some(s) = inner.strip_suffix(" -") {
                inner = s;
                rest = rest.trim_start();
            }
            if !before.is_empty() {
                nodes.push(Node::Text(before.to_string()));
            }
            let inner = inner.trim();
            if inner.starts_with("/*") {
                continue;
            }
            nodes.push(Node::Action(parse_pipeline(inner)?));
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_string()));
        }
        Ok(Template {
            nodes,
            source: text.to_string(),
        })
    }

    /// Renders with the alert's labels (sorted pairs) and value.
    pub fn render(&self, labels: &[(String, String)], value: f64) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let mut prev: Option<Val> = None;
                    for cmd in p {
                        prev = Some(run(cmd, prev, labels, value));
                    }
                    match prev {
                        Some(Val::Str(s)) => out.push_str(&s),
                        Some(Val::Num(v)) => out.push_str(&go_g(v, None)),
                        Some(Val::Map) => {
                            let inner: Vec<String> =
                                labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                            out.push_str(&format!("map[{}]", inner.join(" ")));
                        }
                        None => {}
                    }
                }
            }
        }
        out
    }
}

fn parse_pipeline(s: &str) -> Result<Vec<Vec<Arg>>, TemplateError> {
    let mut cmds = Vec::new();
    for part in split_outside_quotes(s, '|') {
        let mut args = Vec::new();
        for tok in tokens(part.trim())? {
            args.push(parse_arg(&tok)?);
        }
        if args.is_empty() {
            return Err(TemplateError::EmptyCommand(s.to_string()));
        }
        if args.len() > 1 && !matches!(args[0], Arg::Func(_)) {
            return Err(TemplateError::Pipeline(s.to_string()));
        }
        cmds.push(args);
    }
    Ok(cmds)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn tokens(s: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut t = String::from("\"");
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => t.push('\n'),
                        Some('t') => t.push('\t'),
                        Some(o) => t.push(o),
                        None => {}
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => t.push(c),
                }
            }
            if !closed {
                return Err(TemplateError::Unterminated(s.to_string()));
            }
            out.push(t);
        } else {
            let mut t = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                t.push(c);
                chars.next();
            }
            out.push(t);
        }
    }
    Ok(out)
}

fn parse_arg(t: &str) -> Result<Arg, TemplateError> {
    if let Some(s) = t.strip_prefix('"') {
        return Ok(Arg::Str(s.to_string()));
    }
    match t {
        "$value" | ".Value" => return Ok(Arg::Value),
        "$labels" | ".Labels" => return Ok(Arg::Labels),
        _ => {}
    }
    if let Some(l) = t
        .strip_prefix("$labels.")
        .or_else(|| t.strip_prefix(".Labels."))
    {
        return Ok(Arg::Label(l.to_string()));
    }
    if FUNCS.contains(&t) {
        return Ok(Arg::Func(t.to_string()));
    }
    if let Ok(v) = t.parse::<f64>() {
        return Ok(Arg::Num(v));
    }
    Err(TemplateError::Unsupported(t.to_string()))
}

fn run(cmd: &[Arg], piped: Option<Val>, labels: &[(String, String)], value: f64) -> Val {
    let resolve = |a: &Arg| match a {
        Arg::Value => Val::Num(value),
        Arg::Labels => Val::Map,
        Arg::Label(l) => Val::Str(crate::store::ring::label_of(labels, l).to_string()),
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Num(v) => Val::Num(*v),
        Arg::Func(_) => Val::Str(String::new()),
    };
    let Arg::Func(f) = &cmd[0] else {
        return resolve(&cmd[0]);
    };
    let mut args: Vec<Val> = cmd[1..].iter().map(resolve).collect();
    if let Some(p) = piped {
        args.push(p);
    }
    let num = |v: Option<&Val>| match v {
        Some(Val::Num(n)) => *n,
        Some(Val::Str(s)) => s.parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    };
    match f.as_str() {
        "humanize" => Val::Str(humanize(num(args.first()))),
        "humanizePercentage" => Val::Str(format!("{}%", go_g(num(args.first()) * 100.0, Some(4)))),
        "humanizeDuration" => Val::Str(humanize_duration(num(args.first()))),
        _ => {
            let fmt = match args.first() {
                Some(Val::Str(s)) => s.clone(),
                _ => String::new(),
            };
            Val::Str(printf(&fmt, &args[1.min(args.len())..]))
        }
    }
}

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)` (`None`: shortest, as `%v` prints).
pub(crate) fn go_g(v: f64, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = match prec {
        None => format!("{:e}", v.abs()),
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
    };
    let (mant, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > nd && nd >= dp { nd } else { p }
        }
    };
    let sign = if v < 0.0 { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        let mut m = digits[..1].to_string();
        if nd > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    } else if dp <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-dp) as usize))
    } else if dp >= nd {
        format!("{sign}{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        let (a, b) = digits.split_at(dp as usize);
        format!("{sign}{a}.{b}")
    }
}

/// Prometheus' `humanize`.
pub(crate) fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

/// Prometheus' `humanizeDuration`.
pub(crate) fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, Some(4));
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_g(v, Some(4)))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, Some(4)))
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %g %e %%`, with
/// flags, width and precision.
fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let s = match (verb, arg) {
            ('s' | 'v', Val::Str(s)) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('v', Val::Num(n)) => go_g(*n, None),
            ('f' | 'F', Val::Num(n)) => sign(format!("{:.*}", prec.unwrap_or(6), n), &flags, *n),
            ('g', Val::Num(n)) => sign(go_g(*n, prec), &flags, *n),
            ('e', Val::Num(n)) => {
                let s = format!("{:.*e}", prec.unwrap_or(6), n);
                let (m, e) = s.split_once('e').expect("exponent");
                let e: i32 = e.parse().expect("exponent digits");
                sign(
                    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()),
                    &flags,
                    *n,
                )
            }
            ('d', Val::Num(n)) => format!("%!d(float64={})", go_g(*n, None)),
            (v, Val::Num(n)) => format!("%!{v}(float64={})", go_g(*n, None)),
            (v, Val::Str(s)) => format!("%!{v}(string={s})"),
            (v, Val::Map) => format!("%!{v}(map)"),
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = s.chars().count();
        if len < w {
            let pad = w - len;
            if flags.contains('-') {
                out.push_str(&s);
                out.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && !matches!(arg, Val::Str(_)) {
                let (sg, digits) = match s.strip_prefix(['-', '+']) {
                    Some(d) => (&s[..1], d),
                    None => ("", s.as_str()),
                };
                out.push_str(sg);
                out.push_str(&"0".repeat(pad));
                out.push_str(digits);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&s);
            }
        } else {
            out.push_str(&s);
        }
    }
    for extra in args {
        let s = match extra {
            Val::Str(s) => format!("string={s}"),
            Val::Num(n) => format!("float64={}", go_g(*n, None)),
            Val::Map => "map".into(),
        };
        out.push_str(&format!("%!(EXTRA {s})"));
    }
    out
}

fn sign(s: String, flags: &str, n: f64) -> String {
    if n >= 0.0 && flags.contains('+') {
        format!("+{s}")
    } else if n >= 0.0 && flags.contains(' ') {
        format!(" {s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, v: f64) -> String {
        let labels = vec![("cpu".to_string(), "3".to_string())];
        Template::parse(t).unwrap().render(&labels, v)
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_g(1e6, None), "1e+06");
        assert_eq!(go_g(123456.0, None), "123456");
        assert_eq!(go_g(0.95, None), "0.95");
        assert_eq!(go_g(0.00001, None), "1e-05");
        assert_eq!(go_g(1234.5678, Some(4)), "1235");
        assert_eq!(go_g(12345.678, Some(4)), "1.235e+04");
        assert_eq!(go_g(1.5, Some(4)), "1.5");
        assert_eq!(go_g(-0.25, Some(4)), "-0.25");
    }

    #[test]
    fn functions_match_prometheus() {
        assert_eq!(humanize(1_234_567.0), "1.235M");
        assert_eq!(humanize(0.0012), "1.2m");
        assert_eq!(humanize(97e9), "97G");
        assert_eq!(humanize_duration(0.0123), "12.3ms");
        assert_eq!(humanize_duration(90.0), "1m 30s");
        assert_eq!(humanize_duration(93784.0), "1d 2h 3m 4s");
        assert_eq!(humanize_duration(2.5), "2.5s");
        assert_eq!(
            render("{{ $value | humanizePercentage }}", 0.9512),
            "95.12%"
        );
        assert_eq!(
            render(
                "CPU {{ $labels.cpu }} at {{ printf \"%.1f\" $value }}",
                0.25
            ),
            "CPU 3 at 0.2"
        );
        assert_eq!(render("{{ .Labels.cpu }}/{{ .Value }}", 2.0), "3/2");
        assert_eq!(render("{{ humanize $value }}B", 1024.0), "1.024kB");
        assert_eq!(render("{{- $labels.missing -}} x", 1.0), "x");
    }

    #[test]
    fn unsupported_template_constructs_are_rejected() {
        assert_eq!(
            Template::parse("{{ if $value }}x{{ end }}")
                .unwrap_err()
                .to_string(),
            "unsupported construct: template `if`"
        );
        assert_eq!(
            Template::parse("{{ $value | title }}")
                .unwrap_err()
                .to_string(),
            "unsupported construct: template `title`"
        );
        for (text, want) in [
            (
                "a {{ $value",
                "template: unclosed action in \"a {{ $value\"",
            ),
            ("{{ }}", "template: empty command in {{}}"),
            (
                "{{ $value 1 }}",
                "template: unsupported construct {{$value 1}}",
            ),
            ("{{ \"a }}", "template: unterminated string in \"\\\"a\""),
        ] {
            assert_eq!(
                Template::parse(text).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
    }
}
