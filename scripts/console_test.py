#!/usr/bin/env python3
"""The console in a real browser (Debian's chromium + chromedriver, selenium from PyPI).

Starts the relay (the binary given) with a temp data dir, a hooks.d of its own plus the
zadig-robots example, and a fake receiver that fails until told to recover. Then: log in, see
a delivered and a dead delivery, open the dead one's timeline, replay it after the receiver
recovers and watch it turn delivered, run the playground on the example's seed payload (and
with a template edited in place), switch language, and show hostile payloads inertly. Each
test saves a screenshot (target/console-screens/<test>.png) when it fails; with
CONSOLE_SCREENSHOTS=all, every test does (`<test>.ok.png`).

    scripts/console_test.py target/debug/hookrelay
"""

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "target" / "console-screens"
TOKEN = "console-test-admin-token"
XSS_TITLE = '<img src=x onerror="window.__xss=1">'
XSS_NOTE = "<script>window.__xss=2</script>"
# Not the default (+08:00): times on the pages must follow the setting.
TIMEZONE = "+05:30"
SECRETS = ["change-me-dingtalk-access-token", "SECchange-me-dingtalk-secret",
           "change-me-wecom-robot-key", "change-me-zadig-token"]


class Receiver(http.server.BaseHTTPRequestHandler):
    """`/good` always takes a delivery; `/flaky` answers 500 until `recovered` is set."""

    recovered = threading.Event()
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.received.append((self.path, body))
        ok = self.path != "/flaky" or Receiver.recovered.is_set()
        reply = b'{"errcode":0,"errmsg":"ok"}' if ok else b'{"error":"down"}'
        self.send_response(200 if ok else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hooks(dir, receiver):
    shutil.copytree(ROOT / "examples" / "zadig-robots" / "hooks.d", dir)
    (dir / "50-console-test.yaml").write_text(f"""
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {{name: ci}}
spec:
  auth: none
  event:
    type: [{{pointer: /kind, prefix: "ci."}}]
    id: [{{pointer: /id}}]
---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {{name: ci}}
spec:
  types: ["ci.*"]
  msgtype: markdown
  title: "{{{{data.title}}}}"
  text: "**{{{{data.title}}}}**\\n{{{{data.note}}}}"
---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {{name: linked}}
spec:
  title: "{{{{data.title}}}}"
  text: "{{{{data.note}}}}"
  url: "{{{{data.link}}}}"
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: good}}
spec: {{type: webhook, url: "http://127.0.0.1:{receiver}/good"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: flaky}}
spec: {{type: webhook, url: "http://127.0.0.1:{receiver}/flaky", retry: {{maxAttempts: 1}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: to-good}}
spec: {{sources: [ci], types: [ci.ok], channels: [good]}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: hostile}}
spec: {{sources: [ci], types: [ci.xss], channels: [good], template: linked}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: to-flaky}}
spec: {{sources: [ci], types: [ci.flaky], channels: [flaky]}}
""")


class Relay:
    def __init__(self, binary, work, receiver):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        hooks(work / "hooks.d", receiver)
        env = dict(
            os.environ,
            HOOKRELAY_LISTEN=f"127.0.0.1:{self.port}",
            HOOKRELAY_DATA_DIR=str(work / "data"),
            HOOKRELAY_HOOKS_DIR=str(work / "hooks.d"),
            HOOKRELAY_ADMIN_TOKEN=TOKEN,
            HOOKRELAY_VENDORS__DINGTALK=f"http://127.0.0.1:{receiver}",
            HOOKRELAY_VENDORS__WECOM=f"http://127.0.0.1:{receiver}",
            HOOKRELAY_LOG_LEVEL="warn",
            HOOKRELAY_TIMEZONE=TIMEZONE,
        )
        self.proc = subprocess.Popen([binary, "serve"], env=env, cwd=work)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.base}/readyz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the relay did not become ready")

    def post(self, source, body):
        req = urllib.request.Request(
            f"{self.base}/hooks/{source}", json.dumps(body).encode(),
            {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def admin(self, path):
        req = urllib.request.Request(f"{self.base}/admin{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def settled(self, event_id, state):
        """Waits until every delivery of the event is in `state`."""
        deadline = time.time() + 20
        while time.time() < deadline:
            ds = self.admin(f"/events/{event_id}")["deliveries"]
            if ds and all(d["state"] == state for d in ds):
                return ds
            time.sleep(0.1)
        raise AssertionError(f"{event_id} never became {state}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)


def browser():
    opts = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--lang=en-US"]:
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=opts, service=service)


def wait(driver, cond, timeout=10):
    # A list re-rendered between finding its rows and reading them leaves stale elements:
    # that is "not yet", and the condition is asked again.
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(cond)


def text_of(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css).text


def login(driver, relay, token=TOKEN):
    driver.get(f"{relay.base}/console/")
    field = wait(driver, EC.presence_of_element_located((By.ID, "token")))
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def no_script_ran(driver):
    assert driver.execute_script("return window.__xss === undefined"), "a payload ran as code"
    # Refused requests (the wrong token, a bad template) are the tests' own; script errors and
    # Content-Security-Policy violations are not.
    errors = [e for e in driver.get_log("browser")
              if e["level"] == "SEVERE" and e.get("source") != "network"]
    assert not errors, f"console errors: {errors}"


# The tests, in order (later ones use what earlier ones made).

def test_login(driver, relay, ctx):
    login(driver, relay, "wrong-token")
    wait(driver, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#login .error"), "refused"))
    assert not driver.find_elements(By.ID, "nav-deliveries"), "refused token shows the pages"
    login(driver, relay)
    wait(driver, EC.presence_of_element_located((By.ID, "nav-deliveries")))
    wait(driver, EC.presence_of_element_located((By.ID, "backlog-pending")))
    assert "writable" in text_of(driver, "#store-health")
    # Kept for the session: a reload stays logged in.
    driver.refresh()
    wait(driver, EC.presence_of_element_located((By.ID, "backlog-pending")))


def test_delivered_and_dead(driver, relay, ctx):
    ok = relay.post("ci", {"kind": "ok", "id": "e-ok", "title": "Build passed", "note": "all green"})
    dead = relay.post("ci", {"kind": "flaky", "id": "e-flaky", "title": "Deploy failed", "note": "see logs"})
    ctx["ok"], ctx["dead"] = ok["event"], dead["event"]
    relay.settled(ctx["ok"], "delivered")
    relay.settled(ctx["dead"], "dead")
    driver.get(f"{relay.base}/console/#/deliveries")
    rows = "#delivery-rows tbody tr"
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) >= 2)
    states = {e.get_attribute("data-state") for e in driver.find_elements(By.CSS_SELECTOR, f"{rows} .badge")}
    assert {"delivered", "dead"} <= states, states
    # The state filter narrows the list to the dead one.
    Select(driver.find_element(By.CSS_SELECTOR, "#filters select[name=state]")).select_by_value("dead")
    driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait(driver, lambda d: "state=dead" in d.current_url)
    wait(driver, lambda d: {e.get_attribute("data-state") for e in d.find_elements(By.CSS_SELECTOR, f"{rows} .badge")} == {"dead"})


def test_timeline_and_replay(driver, relay, ctx):
    driver.get(f"{relay.base}/console/#/deliveries?state=dead")
    link = wait(driver, EC.element_to_be_clickable((By.CSS_SELECTOR, "#delivery-rows tbody tr td a")))
    link.click()
    section = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "section.delivery[data-state=dead]")))
    timeline = section.find_element(By.CSS_SELECTOR, "ol.timeline").text
    assert "HTTP 500" in timeline, timeline
    assert TIMEZONE in timeline, f"times are not in the configured offset: {timeline}"
    # The message as the receiver gets it, and the routing explanation.
    assert "Deploy failed" in section.text
    assert "Route to-flaky" in text_of(driver, "ul.routing")
    Receiver.recovered.set()
    section.find_element(By.CSS_SELECTOR, "button.replay").click()
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "section.delivery[data-state=delivered]")), 20)
    items = driver.find_elements(By.CSS_SELECTOR, "section.delivery ol.timeline li")
    assert [i.get_attribute("data-result") for i in items] == ["retryable", "delivered"], \
        [i.text for i in items]
    assert relay.admin(f"/events/{ctx['dead']}")["deliveries"][0]["state"] == "delivered"


def test_playground_on_a_seed(driver, relay, ctx):
    seed = json.loads((ROOT / "examples" / "zadig-robots" / "request.json").read_text())
    sent_before = len(Receiver.received)
    driver.get(f"{relay.base}/console/#/playground")
    Select(wait(driver, EC.presence_of_element_located((By.ID, "pg-source")))).select_by_value("zadig")
    headers = "\n".join(f"{k}: {v}" for k, v in seed["headers"].items())
    driver.find_element(By.ID, "pg-headers").send_keys(headers)
    body = driver.find_element(By.ID, "pg-body")
    driver.execute_script("arguments[0].value = arguments[1]", body, json.dumps(seed["body"], ensure_ascii=False))
    driver.find_element(By.ID, "pg-no-auth").click()  # the example's token is checked, as the relay would
    driver.find_element(By.ID, "pg-render").click()
    event = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "#pg-result .rendered-event")))
    text = event.text
    assert "zadig.workflow" in text, text
    planned = event.find_elements(By.CSS_SELECTOR, ".delivery.planned")
    assert planned, text
    assert len(planned) == 2 and all(p.find_elements(By.CSS_SELECTOR, ".bubble") for p in planned), \
        "a vendor preview is missing"
    # The robots' mentions as the group sees them: DingTalk by mobile, WeCom by userid.
    mentions = [a.text for a in event.find_elements(By.CSS_SELECTOR, ".bubble .at")]
    assert "@1340096xxxx" in mentions and "@ZhangWei" in mentions, mentions
    for secret in SECRETS:
        assert secret not in driver.page_source, f"{secret} shown"
    # Edit the template in place and render again: the edited words appear.
    planned[0].find_element(By.CSS_SELECTOR, "button.edit-template").click()
    editor = wait(driver, EC.visibility_of_element_located((By.ID, "pg-template")))
    doc = json.loads(editor.get_attribute("value"))
    doc["spec"] = {"types": doc["spec"].get("types", ["zadig.*"]), "text": "EDITED {{data.workflow.workflow_name}}"}
    driver.execute_script("arguments[0].value = arguments[1]", editor, json.dumps(doc))
    driver.find_element(By.ID, "pg-render").click()
    wait(driver, EC.text_to_be_present_in_element((By.ID, "pg-result"), "EDITED"))
    # A template that does not compile is named, and nothing else changes.
    broken = "apiVersion: hookrelay.dev/v1alpha1\nkind: Template\nmetadata: {name: x}\nspec: {text: '{{#if}}'}"
    driver.execute_script("arguments[0].value = arguments[1]", editor, broken)
    driver.find_element(By.ID, "pg-render").click()
    wait(driver, EC.text_to_be_present_in_element((By.ID, "pg-result"), "does not compile"))
    assert "/spec/text" in text_of(driver, "#pg-result"), text_of(driver, "#pg-result")
    assert len(Receiver.received) == sent_before, "the playground sent something"
    assert relay.admin("/stats")["counts"]["events"] == 2, "the playground stored something"


def test_replay_all_matching(driver, relay, ctx):
    Receiver.recovered.clear()
    ids = [relay.post("ci", {"kind": "flaky", "id": f"e-many-{i}", "title": f"Deploy {i}", "note": "n"})["event"]
           for i in range(3)]
    for i in ids:
        relay.settled(i, "dead")
    Receiver.recovered.set()
    driver.get(f"{relay.base}/console/#/dead")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dead-rows tbody tr")) == 3)
    driver.find_element(By.CSS_SELECTOR, "input[name=channel]").send_keys("flaky")
    driver.find_element(By.ID, "replay-all").click()
    driver.switch_to.alert.accept()
    wait(driver, EC.text_to_be_present_in_element((By.ID, "replay-result"), "scheduled 3"))
    for i in ids:
        relay.settled(i, "delivered")
    driver.refresh()
    wait(driver, EC.presence_of_element_located((By.ID, "no-rows")))


def test_catalog(driver, relay, ctx):
    driver.get(f"{relay.base}/console/#/catalog")
    rows = wait(driver, EC.presence_of_element_located((By.ID, "resources"))).text
    for expected in ["dev-dingtalk", "10-zadig.yaml#1", "50-console-test.yaml", "zadig.workflow"]:
        assert expected in rows, f"{expected} missing: {rows}"
    assert "built in" in rows
    for d in driver.find_elements(By.CSS_SELECTOR, "details.channel"):
        d.click()
    for secret in SECRETS:
        assert secret not in driver.page_source, f"{secret} shown"


def test_language(driver, relay, ctx):
    # Every word exists in both languages.
    text = (ROOT / "console" / "i18n.js").read_text()
    en, zh = text.split("\n  en: {")[1].split("\n  zh: {")
    zh = zh.split("\n};")[0]
    keys = lambda block: set(re.findall(r"(\w+): \"", block))
    assert keys(en) == keys(zh) and len(keys(en)) > 50, keys(en) ^ keys(zh)
    driver.get(f"{relay.base}/console/#/overview")
    wait(driver, EC.text_to_be_present_in_element((By.ID, "nav-overview"), "Overview"))
    Select(driver.find_element(By.ID, "lang")).select_by_value("zh")
    wait(driver, EC.text_to_be_present_in_element((By.ID, "nav-overview"), "概览"))
    assert "投递" in text_of(driver, "#nav-deliveries")
    driver.refresh()  # the choice is kept
    wait(driver, EC.text_to_be_present_in_element((By.ID, "nav-overview"), "概览"))
    Select(driver.find_element(By.ID, "lang")).select_by_value("en")
    wait(driver, EC.text_to_be_present_in_element((By.ID, "nav-overview"), "Overview"))


def test_hostile_payloads_stay_text(driver, relay, ctx):
    r = relay.post("ci", {"kind": "xss", "id": "e-xss", "title": XSS_TITLE, "note": XSS_NOTE,
                          "link": "javascript:window.__xss=3"})
    relay.settled(r["event"], "delivered")
    driver.get(f"{relay.base}/console/#/event/{r['event']}")
    section = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "section.delivery")))
    page = driver.find_element(By.TAG_NAME, "main").text
    assert XSS_TITLE in page and XSS_NOTE in page, "the payload is not shown as text"
    assert not driver.find_elements(By.CSS_SELECTOR, "main img, main script"), "payload became markup"
    assert not driver.find_elements(By.CSS_SELECTOR, "main a[href^='javascript']"), "a javascript: link"
    assert section.find_elements(By.CSS_SELECTOR, ".bubble"), "no preview"
    no_script_ran(driver)
    # The playground shows the same payload inertly too.
    driver.get(f"{relay.base}/console/#/playground")
    Select(wait(driver, EC.presence_of_element_located((By.ID, "pg-source")))).select_by_value("ci")
    body = driver.find_element(By.ID, "pg-body")
    driver.execute_script("arguments[0].value = arguments[1]", body,
                          json.dumps({"kind": "xss", "id": "p-xss", "title": XSS_TITLE, "note": XSS_NOTE,
                                      "link": "javascript:window.__xss=4"}))
    driver.find_element(By.ID, "pg-render").click()
    wait(driver, EC.text_to_be_present_in_element((By.ID, "pg-result"), XSS_NOTE))
    assert not driver.find_elements(By.CSS_SELECTOR, "main img, main script")
    assert not driver.find_elements(By.CSS_SELECTOR, "main a[href^='javascript']")
    # Following the link a payload gave does nothing either.
    for a in driver.find_elements(By.CSS_SELECTOR, "#pg-result a.card-button"):
        a.click()
    no_script_ran(driver)


TESTS = [test_login, test_delivered_and_dead, test_timeline_and_replay, test_playground_on_a_seed,
         test_replay_all_matching, test_catalog, test_language, test_hostile_payloads_stay_text]


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/hookrelay")
    SCREENS.mkdir(parents=True, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="hookrelay-console-"))
    relay = Relay(binary, work, server.server_address[1])
    driver = browser()
    failed = []
    ctx = {}
    try:
        for test in TESTS:
            try:
                test(driver, relay, ctx)
                print(f"ok   {test.__name__}")
                if os.environ.get("CONSOLE_SCREENSHOTS") == "all":
                    driver.save_screenshot(str(SCREENS / f"{test.__name__}.ok.png"))
            except (AssertionError, TimeoutException, Exception):
                shot = SCREENS / f"{test.__name__}.png"
                driver.save_screenshot(str(shot))
                print(f"FAIL {test.__name__} (screenshot {shot})")
                traceback.print_exc()
                failed.append(test.__name__)
    finally:
        driver.quit()
        relay.stop()
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"console: {len(TESTS) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
