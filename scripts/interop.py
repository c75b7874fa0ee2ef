#!/usr/bin/env python3
"""Compares hookrelay's vendor requests with those of independent clients from PyPI.

wechatpy (WeCom application messages) and DingtalkChatbot (DingTalk robot with 加签) send a
message through a recording fake vendor server; hookrelay sends the same message to the same
server; the requests must agree on everything the vendor reads: path, credentials in the query,
signature (verified independently here), and the fields of the JSON body.

    python3 -m pip install -r .ci/requirements.txt
    python3 scripts/interop.py target/debug/hookrelay

Exits non-zero on any difference. Loopback only; every wait is bounded.
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CORP_ID, CORP_SECRET, AGENT_ID, TOKEN = "ww1", "corp-secret", 1000002, "ACCESS-TOKEN"
DING_TOKEN, DING_SECRET = "ding-token", "SECding-secret"
CONTENT, MOBILE = "构建 47 失败 / build 47 failed", "13800000000"

recorded = []
lock = threading.Lock()


class Fake(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        with lock:
            recorded.append({
                "method": self.command,
                "path": url.path,
                "query": dict(urllib.parse.parse_qsl(url.query)),
                "raw_query": url.query,
                "body": json.loads(body) if body else None,
            })
        if url.path.endswith("/gettoken"):
            answer = {"errcode": 0, "errmsg": "ok", "access_token": TOKEN, "expires_in": 7200}
        else:
            answer = {"errcode": 0, "errmsg": "ok", "msgid": "m1"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def sends(path_suffix, since):
    with lock:
        return [r for r in recorded[since:] if r["path"].endswith(path_suffix)]


def reference_requests(base):
    from dingtalkchatbot.chatbot import DingtalkChatbot
    from wechatpy.enterprise import WeChatClient

    class Client(WeChatClient):
        # wechatpy hard-codes the gettoken host; only the address changes here.
        API_BASE_URL = f"{base}/cgi-bin/"

        def fetch_access_token(self):
            return self._fetch_access_token(
                url=f"{base}/cgi-bin/gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret}
            )

    start = len(recorded)
    client = Client(CORP_ID, CORP_SECRET)
    client.message.send_text(AGENT_ID, ["alice", "bob"], CONTENT, party_ids=["2"])
    bot = DingtalkChatbot(f"{base}/robot/send?access_token={DING_TOKEN}", secret=DING_SECRET)
    bot.send_text(CONTENT, at_mobiles=[MOBILE])
    return start


HOOKS = """
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {{name: ci}}
spec: {{auth: none, event: {{type: {{value: ci.build}}}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {{name: ci}}
spec: {{types: [ci.build], msgtype: text, text: "{content}"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: corp}}
spec: {{type: wecom-app, baseUrl: "{base}", corpId: {corp}, corpSecret: {secret}, agentId: {agent}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: ding}}
spec: {{type: dingtalk-robot, baseUrl: "{base}", accessToken: {ding_token}, secret: {ding_secret}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: corp}}
spec: {{channels: [corp], to: {{users: [alice, bob], parties: [2]}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: ding}}
spec: {{channels: [ding], to: {{mobiles: ["{mobile}"]}}}}
"""


def hookrelay_requests(binary, base):
    start = len(recorded)
    work = tempfile.mkdtemp(prefix="hookrelay-interop-")
    hooks = os.path.join(work, "hooks.d")
    os.mkdir(hooks)
    with open(os.path.join(hooks, "interop.yaml"), "w") as f:
        f.write(HOOKS.format(content=CONTENT, base=base, corp=CORP_ID, secret=CORP_SECRET, agent=AGENT_ID,
                             ding_token=DING_TOKEN, ding_secret=DING_SECRET, mobile=MOBILE))
    port = free_port()
    env = dict(os.environ, HOOKRELAY_LISTEN=f"127.0.0.1:{port}", HOOKRELAY_DATA_DIR=os.path.join(work, "data"),
               HOOKRELAY_HOOKS_DIR=hooks, HOOKRELAY_LOG_LEVEL="error")
    relay = subprocess.Popen([binary, "serve"], env=env)
    try:
        def ready():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200
            except OSError:
                return False
        wait_until(ready, 30, "hookrelay to be ready")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/ci", data=b'{"n": 47}', method="POST")
        assert urllib.request.urlopen(req, timeout=10).status == 202
        wait_until(lambda: sends("/message/send", start) and sends("/robot/send", start), 30, "hookrelay's sends")
    finally:
        relay.terminate()
        relay.wait(timeout=30)
    return start


def dingtalk_signature_ok(query):
    ts = query.get("timestamp", "")
    expected = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest())
    return hmac.compare_digest(query.get("sign", "").encode(), expected) and abs(int(ts) / 1000 - time.time()) < 3600


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    ref_start = reference_requests(base)
    ours_start = hookrelay_requests(sys.argv[1], base)
    ref = recorded[ref_start:ours_start]
    ours = recorded[ours_start:]
    pick = lambda reqs, suffix: next(r for r in reqs if r["path"].endswith(suffix))
    problems = []

    def same(what, a, b):
        status = "ok" if a == b else "DIFFERENT"
        print(f"  {status:9} {what}: reference={a!r} hookrelay={b!r}")
        if a != b:
            problems.append(what)

    print("WeCom application message (wechatpy):")
    r_tok, o_tok = pick(ref, "/gettoken"), pick(ours, "/gettoken")
    same("gettoken method", r_tok["method"], o_tok["method"])
    same("gettoken credentials", (r_tok["query"].get("corpid"), r_tok["query"].get("corpsecret")),
         (o_tok["query"].get("corpid"), o_tok["query"].get("corpsecret")))
    r_msg, o_msg = pick(ref, "/message/send"), pick(ours, "/message/send")
    same("send path", r_msg["path"], o_msg["path"])
    same("access_token", r_msg["query"].get("access_token"), o_msg["query"].get("access_token"))
    for field in ["touser", "toparty", "msgtype", "agentid", "safe"]:
        same(f"body.{field}", r_msg["body"].get(field), o_msg["body"].get(field))
    same("body.text.content", r_msg["body"]["text"]["content"], o_msg["body"]["text"]["content"])

    print("DingTalk robot with 加签 (DingtalkChatbot):")
    r_d, o_d = pick(ref, "/robot/send"), pick(ours, "/robot/send")
    same("query parameters", sorted(r_d["query"]), sorted(o_d["query"]))
    same("access_token", r_d["query"].get("access_token"), o_d["query"].get("access_token"))
    same("signature verifies", dingtalk_signature_ok(r_d["query"]), dingtalk_signature_ok(o_d["query"]))
    same("sign encoded once", "%" in r_d["raw_query"].split("sign=")[1], "%" in o_d["raw_query"].split("sign=")[1])
    same("body.msgtype", r_d["body"]["msgtype"], o_d["body"]["msgtype"])
    same("body.at.atMobiles", r_d["body"]["at"].get("atMobiles"), o_d["body"]["at"].get("atMobiles"))
    for who, body in [("reference", r_d["body"]), ("hookrelay", o_d["body"])]:
        content = body["text"]["content"]
        if not (content.startswith(CONTENT) and f"@{MOBILE}" in content):
            problems.append(f"{who} text does not carry the content and @{MOBILE}: {content!r}")
    print(f"  content: reference={r_d['body']['text']['content']!r} hookrelay={o_d['body']['text']['content']!r}")

    server.shutdown()
    if problems:
        sys.exit(f"interop: {len(problems)} difference(s): {problems}")
    print("interop: hookrelay's requests match the reference clients")


if __name__ == "__main__":
    main()
