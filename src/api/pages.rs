//! Pages for a person at the daemon itself: `GET /`, a landing page like every
//! Prometheus exporter's, `GET /docs`, the API reference rendered from the OpenAPI
//! document, and `GET /runbooks`, the embedded `docs/runbooks.md` (what each shipped
//! alert means and what to do), which every rule's `runbook_url` links to.
//!
//! Trading hosts are often offline, so the pages are self-contained: inline CSS, no
//! script, no font or image, and every link relative to the daemon (relative to the
//! page, so they also work behind a proxy that mounts m4watch under a prefix). The
//! Content-Security-Policy they are served with tells the browser the same: load
//! nothing, from anywhere. `/docs` is rendered here, not by a script in the browser,
//! so it works with scripts off and its content is testable without a browser.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, LazySpec, is_ready};

mod markdown;

/// The pages: open even when `api.read_token` is set, like the probes; they change
/// nothing and say no more than the open OpenAPI document does.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(landing))
        .routes(routes!(docs))
        .routes(routes!(runbooks))
}

/// What the landing page links to: (href relative to `/`, name, what it is). Each
/// answers 200 on a ready instance whose reads are open.
const LINKS: &[(&str, &str, &str)] = &[
    ("metrics", "Metrics", "the Prometheus exposition"),
    (
        "docs",
        "API reference",
        "every route, its parameters, bodies and answers",
    ),
    (
        "runbooks",
        "Runbooks",
        "what each shipped alert means, what to check and what to do",
    ),
    (
        "api/v1/openapi.json",
        "OpenAPI document",
        "the same reference as OpenAPI 3.1 JSON",
    ),
    (
        "api/v1/monitoring/health",
        "Health",
        "every collector's last run and error",
    ),
    (
        "api/v1/monitoring/status",
        "Status",
        "version, uptime, configuration summary, rules, receivers",
    ),
    (
        "-/ready",
        "Readiness",
        "200 once every enabled collector has run once",
    ),
    ("-/healthy", "Liveness", "200 while the process serves HTTP"),
];

/// The headers every page is served with. The policy allows the inline style and
/// nothing else: no script, no image, no font, no connection, no frame, no form.
const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

fn page(body: String) -> Response {
    (PAGE_HEADERS, body).into_response()
}

/// The landing page: version, uptime and links to the metrics, the API reference,
/// health and the probes.
#[utoipa::path(get, path = "/", tag = "meta",
    responses((status = 200, description = "the landing page: version and links", body = String, content_type = "text/html")))]
async fn landing(State(s): State<Arc<AppState>>) -> Response {
    page(render_landing(&Landing {
        version: env!("CARGO_PKG_VERSION"),
        uptime: std::time::Duration::from_secs(s.started.elapsed().as_secs()),
        ready: is_ready(&s),
        read_token: s.access.tokens().read_token.is_some(),
    }))
}

/// The API reference: every operation of `/api/v1/openapi.json` with its parameters,
/// request body, answers and token, and every schema they name. Built on the first
/// request, like the document itself.
#[utoipa::path(get, path = "/docs", tag = "meta",
    responses((status = 200, description = "the API reference, rendered from /api/v1/openapi.json", body = String, content_type = "text/html")))]
async fn docs(
    State(state): State<Arc<AppState>>,
    axum::Extension(spec): axum::Extension<Arc<LazySpec>>,
) -> Response {
    let html = spec.docs.get_or_init(|| {
        let doc: Value =
            serde_json::from_str(spec.json(&state)).expect("the OpenAPI document is JSON");
        render_docs(&doc)
    });
    page(html.clone())
}

/// The runbooks: `docs/runbooks.md` as shipped, one section per alert with the id its
/// rules' `runbook_url` names (`/runbooks#containerdown`). Rendered once.
#[utoipa::path(get, path = "/runbooks", tag = "meta",
    responses((status = 200, description = "the runbooks: one section per shipped alert, anchored by the alert name in lower case", body = String, content_type = "text/html")))]
async fn runbooks() -> Response {
    static HTML: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    page(HTML.get_or_init(render_runbooks).clone())
}

fn render_runbooks() -> String {
    use crate::rules::runbooks::{MARKDOWN, anchor, sections};
    let mut b = String::from(
        "<p><a href=\"./\">m4watch</a> · <a href=\"docs\">API reference</a></p>\n<p class=\"muted\">Alerts:",
    );
    for (i, h) in sections(MARKDOWN).iter().enumerate() {
        let sep = if i == 0 { " " } else { " · " };
        let _ = write!(
            b,
            "{sep}<a href=\"#{}\">{}</a>",
            escape(&anchor(h)),
            escape(h)
        );
    }
    b.push_str("</p>\n");
    b.push_str(&markdown::to_html(MARKDOWN));
    html_page("m4watch runbooks", &b)
}

/// What the landing page shows about the instance.
struct Landing {
    version: &'static str,
    uptime: std::time::Duration,
    ready: bool,
    read_token: bool,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f;line-height:1.45}\
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}\
code{font-family:ui-monospace,monospace;background:#f2f2f2;padding:0 .2rem}\
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}\
th{background:#f6f6f6}.op{border:1px solid #ddd;border-radius:4px;padding:.2rem .8rem;margin:1rem 0}\
.m{display:inline-block;min-width:4rem;font-weight:bold;font-family:ui-monospace,monospace}\
.get{color:#0a6}.post{color:#06c}.put,.patch{color:#a60}.delete{color:#c00}\
.muted{color:#666}.desc{white-space:pre-wrap}";

/// The document around `body`.
fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

fn render_landing(l: &Landing) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>m4watch</h1>\n<p>Monitoring sidecar for Apple M4 Max trading hosts: hardware, \
         containers, trading latency, alerts.</p>\n<table>\n\
         <tr><th>version</th><td id=\"version\">{}</td></tr>\n\
         <tr><th>uptime</th><td>{}</td></tr>\n\
         <tr><th>ready</th><td>{}</td></tr>\n</table>\n<ul>\n",
        escape(l.version),
        escape(&humantime::format_duration(l.uptime).to_string()),
        if l.ready {
            "yes"
        } else {
            "not yet: collectors have not all run"
        },
    );
    for (href, name, what) in LINKS {
        let _ = writeln!(
            b,
            "<li><a href=\"{}\">{}</a>: {}</li>",
            escape(href),
            escape(name),
            escape(what)
        );
    }
    b.push_str("</ul>\n");
    if l.read_token {
        b.push_str(
            "<p class=\"muted\">Reads need the read token (<code>api.read_token</code>): \
             send <code>Authorization: Bearer &lt;token&gt;</code>.</p>\n",
        );
    }
    html_page("m4watch", &b)
}

/// The methods an OpenAPI path item can hold, in the order they are listed.
const METHODS: &[&str] = &[
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// The fragment id of an operation: its method and path, with every character that
/// is not a letter or digit as `-` (`get--api-v1-monitoring-alerts`).
pub fn operation_anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{method}-{slug}")
}

fn schema_anchor(name: &str) -> String {
    format!("schema-{}", escape(name))
}

/// The API reference page for an OpenAPI 3.1 document.
pub(crate) fn render_docs(doc: &Value) -> String {
    let empty = Map::new();
    let info = &doc["info"];
    let title = info["title"].as_str().unwrap_or("API");
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<p><a href=\"./\">m4watch</a> · <a href=\"api/v1/openapi.json\">OpenAPI document</a></p>\n\
         <h1>{} API reference</h1>\n<p class=\"muted\">version {}</p>",
        escape(title),
        escape(info["version"].as_str().unwrap_or("")),
    );
    if let Some(d) = info["description"].as_str() {
        let _ = writeln!(b, "<p class=\"desc\">{}</p>", escape(d));
    }
    b.push_str(
        "<p>Routes marked <b>token</b> need <code>Authorization: Bearer &lt;token&gt;</code> \
         (<code>M4WATCH_API_TOKEN</code>); reads are open unless <code>api.read_token</code> \
         is set.</p>\n",
    );

    // Operations grouped by their first tag, tags in name order.
    let mut by_tag: std::collections::BTreeMap<&str, Vec<(&str, &str, &Value)>> =
        Default::default();
    for (path, item) in doc["paths"].as_object().unwrap_or(&empty) {
        for method in METHODS {
            if let Some(op) = item.get(*method).filter(|o| o.is_object()) {
                let tag = op["tags"][0].as_str().unwrap_or("other");
                by_tag.entry(tag).or_default().push((method, path, op));
            }
        }
    }

    b.push_str("<h2 id=\"contents\">Contents</h2>\n");
    for (tag, ops) in &by_tag {
        let _ = writeln!(b, "<h3>{}</h3>\n<ul>", escape(tag));
        for (method, path, op) in ops {
            let _ = writeln!(
                b,
                "<li><a href=\"#{}\"><span class=\"m {method}\">{}</span> <code>{}</code></a> {}</li>",
                operation_anchor(method, path),
                method.to_uppercase(),
                escape(path),
                escape(op["summary"].as_str().unwrap_or("")),
            );
        }
        b.push_str("</ul>\n");
    }
    b.push_str("<p><a href=\"#schemas\">Schemas</a></p>\n");

    for (tag, ops) in &by_tag {
        let _ = writeln!(b, "<h2>{}</h2>", escape(tag));
        for (method, path, op) in ops {
            render_operation(&mut b, method, path, op);
        }
    }

    b.push_str("<h2 id=\"schemas\">Schemas</h2>\n");
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap_or(&empty) {
        render_schema(&mut b, name, schema);
    }
    html_page(&format!("{title} API reference"), &b)
}

fn render_operation(b: &mut String, method: &str, path: &str, op: &Value) {
    let _ = writeln!(
        b,
        "<section class=\"op\" id=\"{}\">\n<h3><span class=\"m {method}\">{}</span> <code>{}</code></h3>",
        operation_anchor(method, path),
        method.to_uppercase(),
        escape(path),
    );
    for key in ["summary", "description"] {
        if let Some(text) = op[key].as_str() {
            let _ = writeln!(b, "<p class=\"desc\">{}</p>", escape(text));
        }
    }
    let token = op["security"].as_array().is_some_and(|s| !s.is_empty());
    let auth = if token {
        "<b>token</b>: <code>Authorization: Bearer &lt;token&gt;</code>"
    } else if op["responses"].get("401").is_some() {
        "open unless <code>api.read_token</code> is set"
    } else {
        "open"
    };
    let _ = writeln!(b, "<p>Auth: {auth}</p>");

    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        b.push_str(
            "<h4>Parameters</h4>\n<table>\n<tr><th>name</th><th>in</th><th>required</th><th>type</th><th>description</th></tr>\n",
        );
        for p in params {
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"desc\">{}</td></tr>",
                escape(p["name"].as_str().unwrap_or("")),
                escape(p["in"].as_str().unwrap_or("")),
                if p["required"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                type_of(&p["schema"]),
                escape(p["description"].as_str().unwrap_or("")),
            );
        }
        b.push_str("</table>\n");
    }

    let body = &op["requestBody"];
    if body.is_object() {
        let _ = writeln!(
            b,
            "<h4>Request body{}</h4>",
            if body["required"].as_bool() == Some(true) {
                " (required)"
            } else {
                ""
            }
        );
        if let Some(d) = body["description"].as_str() {
            let _ = writeln!(b, "<p class=\"desc\">{}</p>", escape(d));
        }
        let _ = writeln!(b, "<p>{}</p>", content_of(&body["content"]));
    }

    b.push_str(
        "<h4>Responses</h4>\n<table>\n<tr><th>status</th><th>description</th><th>body</th></tr>\n",
    );
    if let Some(responses) = op["responses"].as_object() {
        for (status, r) in responses {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td class=\"desc\">{}</td><td>{}</td></tr>",
                escape(status),
                escape(r["description"].as_str().unwrap_or("")),
                content_of(&r["content"]),
            );
        }
    }
    b.push_str("</table>\n</section>\n");
}

/// Each media type of a `content` map with its schema, as HTML.
fn content_of(content: &Value) -> String {
    let Some(content) = content.as_object().filter(|c| !c.is_empty()) else {
        return "<span class=\"muted\">none</span>".into();
    };
    content
        .iter()
        .map(|(media, c)| {
            let schema = &c["schema"];
            if schema.is_object() {
                format!("<code>{}</code>: {}", escape(media), type_of(schema))
            } else {
                format!("<code>{}</code>", escape(media))
            }
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// A schema in a few words, as HTML: a link to a named schema, `array of …`,
/// `map of …`, alternatives joined with `|`, an enum's values.
fn type_of(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#{}\">{}</a>", schema_anchor(name), escape(name));
    }
    for (key, sep) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " &amp; ")] {
        if let Some(list) = s[key].as_array() {
            return list.iter().map(type_of).collect::<Vec<_>>().join(sep);
        }
    }
    if let Some(values) = s["enum"].as_array() {
        return values
            .iter()
            .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let one = |t: &str| -> String {
        match t {
            "array" => format!("array of {}", type_of(&s["items"])),
            "object" if s["additionalProperties"].is_object() => {
                format!("map of {}", type_of(&s["additionalProperties"]))
            }
            "null" => "null".into(),
            other => match s["format"].as_str() {
                Some(f) => format!("{} ({})", escape(other), escape(f)),
                None => escape(other),
            },
        }
    };
    match &s["type"] {
        Value::String(t) => one(t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(one)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    }
}

fn render_schema(b: &mut String, name: &str, schema: &Value) {
    let _ = writeln!(
        b,
        "<section class=\"op\" id=\"{}\">\n<h3><code>{}</code></h3>",
        schema_anchor(name),
        escape(name)
    );
    if let Some(d) = schema["description"].as_str() {
        let _ = writeln!(b, "<p class=\"desc\">{}</p>", escape(d));
    }
    match schema["properties"].as_object() {
        Some(props) => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            b.push_str(
                "<table>\n<tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>\n",
            );
            for (field, p) in props {
                let _ = writeln!(
                    b,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"desc\">{}</td></tr>",
                    escape(field),
                    type_of(p),
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    escape(p["description"].as_str().unwrap_or("")),
                );
            }
            b.push_str("</table>\n");
        }
        None => {
            let _ = writeln!(b, "<p>{}</p>", type_of(schema));
        }
    }
    b.push_str("</section>\n");
}

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markup_in_the_document_is_escaped() {
        let doc = json!({
            "info": {"title": "t<script>", "version": "1\"2"},
            "paths": {"/x/{id}": {"post": {
                "tags": ["a&b"],
                "summary": "<img src=x onerror=alert(1)>",
                "parameters": [{"name": "id'", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/B<o>dy"}}}},
                "responses": {"200": {"description": "<b>ok</b>"}},
                "security": [{"bearer": []}]
            }}},
            "components": {"schemas": {"B<o>dy": {"type": "object", "properties": {"<f>": {"type": "string"}}}}}
        });
        let html = render_docs(&doc);
        for raw in ["<script>", "<img", "<b>ok", "B<o>dy", "<f>", "a&b", "id'"] {
            assert!(!html.contains(raw), "{raw} reached the page unescaped");
        }
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("<a href=\"#schema-B&lt;o&gt;dy\">B&lt;o&gt;dy</a>"));
        assert!(html.contains("id=\"schema-B&lt;o&gt;dy\""));
        assert!(html.contains("<b>token</b>"));
    }

    #[test]
    fn every_operation_gets_an_anchor_and_a_contents_link() {
        let doc = json!({
            "info": {"title": "m4watch", "version": "0"},
            "paths": {
                "/a": {"get": {"tags": ["one"], "responses": {}}, "delete": {"responses": {"401": {"description": ""}}}},
                "/-/b/{id}": {"post": {"tags": ["two"], "responses": {}}}
            }
        });
        let html = render_docs(&doc);
        for (m, p) in [("get", "/a"), ("delete", "/a"), ("post", "/-/b/{id}")] {
            let id = operation_anchor(m, p);
            assert!(html.contains(&format!("id=\"{id}\"")), "{m} {p}");
            assert!(html.contains(&format!("href=\"#{id}\"")), "{m} {p}");
        }
        assert_eq!(operation_anchor("post", "/-/b/{id}"), "post----b--id-");
        // No tag: listed under "other"; a 401 without security: the read token.
        assert!(html.contains("<h2>other</h2>"));
        assert!(html.contains("open unless <code>api.read_token</code> is set"));
    }

    #[test]
    fn schemas_read_in_a_few_words() {
        assert_eq!(
            type_of(&json!({"type": "array", "items": {"$ref": "#/components/schemas/A"}})),
            "array of <a href=\"#schema-A\">A</a>"
        );
        assert_eq!(
            type_of(&json!({"type": ["integer", "null"], "format": "int64"})),
            "integer (int64) | null"
        );
        assert_eq!(
            type_of(&json!({"type": "object", "additionalProperties": {"type": "number"}})),
            "map of number"
        );
        assert_eq!(
            type_of(&json!({"enum": ["info", "warning"]})),
            "<code>&quot;info&quot;</code> | <code>&quot;warning&quot;</code>"
        );
        assert_eq!(type_of(&json!({})), "any");
    }

    #[test]
    fn the_landing_page_links_everywhere_relative_to_itself() {
        let html = render_landing(&Landing {
            version: "9.9.9",
            uptime: std::time::Duration::from_secs(61),
            ready: true,
            read_token: true,
        });
        assert!(html.contains("<td id=\"version\">9.9.9</td>"));
        assert!(html.contains("1m 1s"));
        for (href, _, _) in LINKS {
            assert!(!href.starts_with('/') && !href.contains(':'), "{href}");
            assert!(html.contains(&format!("href=\"{href}\"")), "{href}");
        }
        assert!(html.contains("api.read_token"));
    }
}
