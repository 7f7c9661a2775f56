#!/usr/bin/python3
"""The pages at the daemon in a real browser, offline (issue 19).

    scripts/check-pages.py [M4WATCH_BINARY]      (default target/debug/m4watch)

m4watch and headless Chromium (Debian `chromium`) run together in a network namespace
whose only interface is loopback, so nothing can leave the host. For `/`, `/docs` and
`/runbooks`: Chromium loads the page and dumps its DOM, which must hold what the page is
for (the version and links; every operation of /api/v1/openapi.json; a section for every
`## ` heading of docs/runbooks.md and for the `runbook_url` of every alerting rule the
instance runs, as /api/v1/monitoring/status lists them); every link in that DOM
must answer 200 from the daemon (in-page links must name an element); Chromium must
report no console error (a Content-Security-Policy refusal is one); and Chromium's
net log must show that every request the page made went to loopback: the namespace
guarantees nothing could leave, the log shows nothing tried. Chromium's own background
traffic (its component updater, which no flag stops in headless mode) is no request of
the page's; it is listed, and must have failed offline.

Fails (non-zero) when Chromium, unshare or ip is missing: scripts/test.sh installs them.
Standard library only.
"""

import html.parser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

NETNS_MARK = "M4WATCH_PAGES_NETNS"
PAGES = ["/", "/docs", "/runbooks"]
RUNBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "runbooks.md")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# What the browser may touch without a network: the page's own scheme-less bits.
LOCAL_SCHEMES = {"data", "about", "blob", "chrome", "chrome-error"}


def fail(msg):
    print(f"check-pages: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def need(cmd, package):
    path = shutil.which(cmd)
    if not path:
        fail(f"`{cmd}` is not installed (Debian package {package}); scripts/test.sh installs it")
    return path


def enter_offline_namespace():
    """Re-runs this script in a fresh network namespace with only loopback up."""
    unshare = need("unshare", "util-linux")
    need("ip", "iproute2")
    args = [unshare, "--net"]
    if os.geteuid() != 0:
        args = [unshare, "--user", "--map-root-user", "--net"]
    env = dict(os.environ, **{NETNS_MARK: "1"})
    os.execve(unshare, args + ["--", sys.executable, *sys.argv], env)


def assert_offline():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip() for line in links.splitlines()]
    if names != ["lo"]:
        fail(f"the namespace has interfaces besides loopback: {names}")
    routes = subprocess.run(["ip", "route"], check=True, capture_output=True, text=True).stdout
    if routes.strip():
        fail(f"the namespace has routes: {routes}")
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("192.0.2.1", 80))  # TEST-NET-1: must be unreachable here
        fail("a connection to 192.0.2.1 succeeded: the namespace is not offline")
    except OSError:
        pass
    finally:
        s.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url):
    """(status, content type, body) of a GET, without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


class Links(html.parser.HTMLParser):
    """Every href/src value and every element id of a document."""

    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append(value)
            if name == "id" and value is not None:
                self.ids.add(value)


def anchor(method, path):
    """The fragment id m4watch gives an operation (api::pages::operation_anchor)."""
    return method + "-" + "".join(c if c.isascii() and c.isalnum() else "-" for c in path)


def chromium(exe, url, work, name):
    """Loads `url` headless; returns (dom, console errors, net log path, seconds)."""
    netlog = os.path.join(work, f"{name}.netlog.json")
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={os.path.join(work, 'profile-' + name)}",
        "--no-first-run", "--no-default-browser-check", "--disable-default-apps",
        "--disable-extensions", "--disable-sync", "--disable-background-networking",
        "--disable-component-update", "--disable-field-trial-config", "--no-pings",
        "--disable-domain-reliability", "--disable-client-side-phishing-detection",
        "--disable-features=NetworkTimeServiceQuerying,Translate,OptimizationHints,MediaRouter",
        "--enable-logging=stderr", "--v=0",
        f"--log-net-log={netlog}",
        "--window-size=1280,2000",
        "--dump-dom", url,
    ]
    started = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, HOME=work))
    took = time.monotonic() - started
    if r.returncode != 0:
        fail(f"chromium exited {r.returncode} on {url}:\n{r.stderr[-3000:]}")
    # Page console messages are logged as `CONSOLE(line)` / `:CONSOLE:`; CSP refusals
    # as "Refused to ...".
    errors = [l for l in r.stderr.splitlines()
              if ("CONSOLE" in l and ("Uncaught" in l or "Refused" in l or "rror" in l))
              or "Refused to" in l or "Content Security Policy" in l]
    return r.stdout, errors, netlog, took


def requests_in(netlog):
    """(url, is the page's, net error) for every URL request in a Chromium net log.

    A request of the page carries the page's site in its network isolation key; the
    browser's own (component updater) carries `null null`."""
    with open(netlog) as f:
        text = f.read()
    # A net log cut short (the browser exiting) lacks its closing brackets.
    try:
        log = json.loads(text)
    except json.JSONDecodeError:
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    starts, errors = {}, {}
    for e in log["events"]:
        p = e.get("params") or {}
        src = e["source"]["id"]
        if types.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p:
            page = p.get("network_isolation_key", "null null") != "null null"
            starts.setdefault(src, []).append((p["url"], page))
        if "net_error" in p and p["net_error"] < 0:
            errors[src] = p["net_error"]
    out = []
    for src, reqs in starts.items():
        for url, page in reqs:
            out.append((url, page, errors.get(src)))
    # Any URL the log mentions at all, for the host check below.
    mentioned = set(re.findall(r'"url":"([^"]+)"', text))
    return out, mentioned


def host_of(url):
    u = urllib.parse.urlsplit(url)
    return u.scheme, u.hostname


def runbook_sections():
    """The `## ` headings of docs/runbooks.md outside code fences, as GitHub anchors them
    (rules::runbooks::anchor)."""
    out, fenced = [], False
    with open(RUNBOOKS) as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif not fenced and line.startswith("## "):
                text = line[3:].strip()
                out.append("".join("-" if c == " " else c.lower() for c in text
                                   if c.isalnum() or c in " -_"))
    return out


def check_page(exe, base, path, work, spec, version, rules):
    url = base + path
    dom, console_errors, netlog, took = chromium(exe, url, work, "root" if path == "/" else path.strip("/"))
    print(f"  {path}: chromium rendered {len(dom)} bytes of DOM in {took:.1f} s")
    if console_errors:
        fail(f"{path}: the browser console reports errors:\n" + "\n".join(console_errors))

    parsed = Links()
    parsed.feed(dom)
    if path == "/":
        want = f'<td id="version">{version}</td>'
        if want not in dom:
            fail(f"/: the rendered page lacks {want}")
        for href in ("metrics", "docs", "runbooks", "api/v1/openapi.json", "api/v1/monitoring/health",
                     "-/ready", "-/healthy"):
            if href not in parsed.links:
                fail(f"/: no link to {href}; links: {parsed.links}")
    elif path == "/runbooks":
        sections = runbook_sections()
        for a in sections:
            if a not in parsed.ids:
                fail(f"/runbooks: the rendered page lacks section #{a} of docs/runbooks.md")
        for r in rules:
            link = r.get("runbook_url") or ""
            if not link.startswith("/runbooks#") or link.split("#", 1)[1] not in parsed.ids:
                fail(f"/runbooks: rule {r['name']}'s runbook_url {link!r} names no section of the page")
        print(f"  /runbooks: all {len(sections)} sections rendered; the runbook_url of each of "
              f"{len(rules)} alerting rules names one")
    else:
        count = 0
        for p, item in spec["paths"].items():
            for method in item:
                count += 1
                a = anchor(method, p)
                if a not in parsed.ids:
                    fail(f"/docs: the rendered page lacks {method.upper()} {p} (#{a})")
                if "#" + a not in parsed.links:
                    fail(f"/docs: the contents do not link to {method.upper()} {p}")
        for name in spec.get("components", {}).get("schemas", {}):
            if f"schema-{name}" not in parsed.ids:
                fail(f"/docs: the rendered page lacks schema {name}")
        print(f"  /docs: all {count} operations of /api/v1/openapi.json rendered")

    # Every link answers (in-page ones name an element), and none leaves the daemon.
    followed = 0
    for href in dict.fromkeys(parsed.links):
        if href.startswith("#"):
            if href[1:] not in parsed.ids:
                fail(f"{path}: link {href} names no element")
            continue
        target = urllib.parse.urljoin(url, href)
        if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(base).netloc:
            fail(f"{path}: link {href} leaves the daemon ({target})")
        status, _, _ = get(target)
        if status != 200:
            fail(f"{path}: link {href} ({target}) answered {status}")
        followed += 1
    print(f"  {path}: {len(parsed.links)} links, {followed} followed off the page, each 200")

    # The net log: every request of the page went to loopback; the browser's own
    # attempts failed (offline).
    requests, mentioned = requests_in(netlog)
    page_urls = [u for u, page, _ in requests if page]
    if url not in page_urls:
        fail(f"{path}: the net log has no request for {url}: is it the right log? {page_urls}")
    for u, page, err in requests:
        scheme, host = host_of(u)
        if page and scheme not in LOCAL_SCHEMES and host not in LOOPBACK:
            fail(f"{path}: the page requested {u}")
        if not page and host not in LOOPBACK and err is None:
            fail(f"{path}: chromium's own request to {u} did not fail: the namespace is not offline")
    for u in mentioned:
        scheme, host = host_of(u)
        if scheme not in LOCAL_SCHEMES and host not in LOOPBACK and not any(u == r for r, _, _ in requests):
            fail(f"{path}: the net log names {u}, which is no request it accounts for")
    own = sorted({host_of(u)[1] for u, page, _ in requests if not page and host_of(u)[1] not in LOOPBACK})
    print(f"  {path}: net log: {len(page_urls)} requests of the page, all to loopback"
          + (f"; chromium's own attempts to {', '.join(own)} failed offline" if own else ""))


def main():
    exe = need("chromium", "chromium")
    if os.environ.get(NETNS_MARK) != "1":
        enter_offline_namespace()
    started = time.monotonic()
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/m4watch")
    if not os.access(binary, os.X_OK):
        fail(f"{binary} is not an executable m4watch binary (cargo build first)")
    assert_offline()
    print("check-pages: offline network namespace (loopback only)")

    work = tempfile.mkdtemp(prefix="m4watch-pages-")
    port = free_port()
    config = os.path.join(work, "m4watch.yml")
    with open(config, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\ndata_dir: {work}/data\n"
                f"trading:\n  statsd_listen: 127.0.0.1:0\ncontainers:\n  enabled: false\n")
    log = open(os.path.join(work, "m4watch.log"), "w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("M4WATCH_")}
    daemon = subprocess.Popen([binary, "--config", config], stdout=log, stderr=log, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while get_or_none(base + "/-/ready") != 200:
            if daemon.poll() is not None or time.monotonic() > deadline:
                log.flush()
                with open(os.path.join(work, "m4watch.log")) as f:
                    fail("m4watch did not become ready:\n" + f.read()[-3000:])
            time.sleep(0.2)
        status, _, body = get(base + "/api/v1/openapi.json")
        if status != 200:
            fail(f"/api/v1/openapi.json answered {status}")
        spec = json.loads(body)
        version = json.loads(get(base + "/api/v1/monitoring/health")[2])["version"]
        rules = json.loads(get(base + "/api/v1/monitoring/status")[2])["rules"]["alerting"]
        if not rules:
            fail("/api/v1/monitoring/status lists no alerting rule")
        for path in PAGES:
            check_page(exe, base, path, work, spec, version, rules)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"check-pages: ok ({time.monotonic() - started:.1f} s)")


def get_or_none(url):
    try:
        return get(url)[0]
    except OSError:
        return None


if __name__ == "__main__":
    main()
