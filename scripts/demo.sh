#!/usr/bin/env bash
# The main job on embedded defaults, in a fresh temporary folder: a SQLite store, subscribers
# imported from a spreadsheet export, a seed list, the sample issue composed and linted, a
# local capture SMTP server, a test send, the real send (DKIM-signed, VERP return paths),
# the send log, a bounce and a complaint processed, requests emailed to the digest address
# (double opt-in, an unsubscribe confirmed by its owner, review, a message held on an
# error, a forged bounce left unverified), the one-click unsubscribe page, and the public
# archive with its feed and static export, and a signup through the web form (confirmation,
# link, welcome mail), a send scheduled a few seconds ahead and sent by `run`, and the
# reports (one issue; the HTML report across issues).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d -t digest-demo.XXXXXX)"
cd "$work"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The signing secret comes from the environment, never from a file.
DIGEST_MAILER_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export DIGEST_MAILER_SECRET
mkdir keys
digest-mailer dkim keygen --selector demo --domain policy-lab.test --out keys > keys/dns-record.txt
cat > config.toml <<TOML
[newsletter]
title = "Policy Digest"
from_name = "Policy Digest"
from_address = "digest@policy-lab.test"
request_address = "digest@policy-lab.test"
list_id = "digest.policy-lab.test"
public_url = "https://digest.policy-lab.test"
postal_address = "Policy Lab, 1 Example Street, Springfield"
# return paths bounces+TOKEN@policy-lab.test name each delivery (VERP)
bounce_address = "bounces@policy-lab.test"

[dkim]
# made above with: digest-mailer dkim keygen --selector demo --domain policy-lab.test --out keys
selector = "demo"
domain = "policy-lab.test"
private_key_file = "keys/demo.private.pem"

[smtp]
# the local capture server started below; a real relay would use starttls and a login
host = "127.0.0.1"
port = $port
security = "none"
connections = 2

[subscribers]
# the demo's invented people live on .test domains
allow_test_domains = true
TOML
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "digest-mailer init  (SQLite store in $work/subscribers/digest.db)"
digest-mailer init
step "import a spreadsheet export (semicolons, a duplicate, one broken row)"
digest-mailer subscribers import "$here/subscribers/demo.example.csv"
step "the seed list for test sends"
digest-mailer subscribers add editor@policy-lab.test --name "Seed Editor" --list seed
step "a reader asks to be removed; importing the same file again does not bring them back"
digest-mailer subscribers remove eitan.roth@press.test --reason "asked at the conference"
digest-mailer subscribers import "$here/subscribers/demo.example.csv"
step "subscribers"
digest-mailer subscribers list

step "compose the sample issue (digest text as staff write it) and lint it"
cp "$here/examples/vol-2.4.txt" "$work/vol-2.4.txt"
digest-mailer compose vol-2.4.txt --out "$work/vol-2.4" --screenshots

step "start a local capture SMTP server on 127.0.0.1:$port"
digest-mailer capture-smtp --maildir "$work/captured" --port "$port" > capture.log 2>&1 &
capture=$!
trap 'kill $capture 2>/dev/null || true; wait $capture 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
PY

step "the real send is refused until a test send of this exact version succeeded"
digest-mailer send vol-2.4.txt --yes 2>&1 | tail -n 1 || true
step "test send to the seed list"
digest-mailer send vol-2.4.txt --test
step "send to every active subscriber, each exactly once"
digest-mailer send vol-2.4.txt --yes
step "running it again sends nobody anything twice"
digest-mailer send vol-2.4.txt --yes
step "status and the send log"
digest-mailer status
digest-mailer log 2.4

step "every message is DKIM-signed (checked with dkimpy) and returns to its own VERP address"
grep "IN TXT" keys/dns-record.txt | cut -c1-100
python3 - "$work/captured" "$work/keys/demo.public.pem" <<'PY'
import mailbox, sys
import dkim
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from digest_mailer.signing import dns_txt_value
record = dns_txt_value(load_pem_public_key(open(sys.argv[2], "rb").read())).encode()
dns = lambda name, timeout=5: record if name == b"demo._domainkey.policy-lab.test." else None
messages = [m.as_bytes() for m in mailbox.Maildir(sys.argv[1])]
good = sum(bool(dkim.verify(m, dnsfunc=dns)) for m in messages)
print(f"  {good} of {len(messages)} captured messages carry a valid DKIM signature")
sample = next(m for m in mailbox.Maildir(sys.argv[1]) if "+" in m["Return-Path"])
print(f"  Return-Path: {sample['Return-Path']}  (To: {sample['To']})")
PY

step "a bounce report and a spam complaint come back to those addresses"
python3 - "$work/captured" "$work/bounces" <<'PY'
import mailbox, sys
paths = {m["Delivered-To"]: m["Return-Path"].strip("<>") for m in mailbox.Maildir(sys.argv[1])
         if "+" in m["Return-Path"]}
box = mailbox.Maildir(sys.argv[2])
dana, cyrus = "dana.kowalski@university.test", "cyrus.okafor@ministry.test"
box.add(f"""From: MAILER-DAEMON@mx.university.test\r\nTo: {paths[dana]}\r\nSubject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.university.test>\r\nMIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.university.test

Final-Recipient: rfc822; {dana}\r\nAction: failed\r\nStatus: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{dana}>: user unknown\r\n\r\n--b--\r\n""".replace("\n", "\r\n").replace("\r\r", "\r").encode())
box.add(f"""From: fbl@isp.test\r\nTo: bounces@policy-lab.test\r\nSubject: complaint
Message-ID: <arf-1@isp.test>\r\nMIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="f"

--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1
Original-Mail-From: <{paths[cyrus]}>\r\n\r\n--f--\r\n""".replace("\n", "\r\n").replace("\r\r", "\r").encode())
PY
digest-mailer bounces process --maildir bounces
step "a forged report (no VERP token, no Message-ID of ours) names a reader: recorded as unverified, nobody changes"
python3 - "$work/bounces" <<'PY'
import mailbox, sys
mailbox.Maildir(sys.argv[1]).add(b"""From: MAILER-DAEMON@mx.attacker.test\r\nTo: bounces@policy-lab.test\r
Subject: failure notice\r\nMessage-ID: <forged-1@mx.attacker.test>\r\n\r
<fatima.haddad@ngo.test>: 550 5.1.1 user unknown\r\n""")
PY
digest-mailer bounces process --maildir bounces
digest-mailer subscribers show fatima.haddad@ngo.test | sed -n '1,3p'
digest-mailer bounces list
digest-mailer status 2.4 --json | python3 -c 'import json, sys; print("  status --json bounces:", json.load(sys.stdin)["bounces"])'

step "requests people emailed to the digest address (a Maildir; IMAP works the same way)"
python3 - "$here/examples/requests" "$work/requests" <<'PY'
import mailbox, pathlib, sys
box = mailbox.Maildir(sys.argv[2])
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.eml")):
    box.add(path.read_bytes())
PY
digest-mailer requests process --maildir requests --dry-run
digest-mailer requests process --maildir requests
step "processing the same mailbox again changes nothing"
digest-mailer requests process --maildir requests | tail -n 1
step "Elif replies to her confirmation (the token is in its subject): she is subscribed"
python3 - "$work/captured" "$work/requests" <<'PY'
import mailbox, sys
from email import message_from_bytes, policy
captured = [message_from_bytes(m.as_bytes(), policy=policy.default) for m in mailbox.Maildir(sys.argv[1])]
confirm = next(m for m in captured if str(m["Subject"]).startswith("Confirm your subscription"))
print(f"  captured: To: {confirm['To']} / Subject: {confirm['Subject']}")
reply = (f"From: elif.demir@newsroom.test\r\nTo: digest@policy-lab.test\r\nSubject: Re: {confirm['Subject']}\r\n"
         f"Message-ID: <demo-5@newsroom.test>\r\nIn-Reply-To: {confirm['Message-ID']}\r\n\r\nYes, please.\r\n")
mailbox.Maildir(sys.argv[2]).add(reply.encode())
PY
digest-mailer requests process --maildir requests
digest-mailer subscribers show elif.demir@newsroom.test
step "Bo's unsubscribe proved nothing (anyone can write a From line): Bo was asked, replies, and is unsubscribed"
python3 - "$work/captured" "$work/requests" <<'PY'
import mailbox, sys
from email import message_from_bytes, policy
captured = [message_from_bytes(m.as_bytes(), policy=policy.default) for m in mailbox.Maildir(sys.argv[1])]
asked = next(m for m in captured if str(m["Subject"]).startswith("Confirm: stop sending"))
print(f"  captured: To: {asked['To']} / Subject: {asked['Subject']}")
reply = (f"From: bo.chen@policy-lab.test\r\nTo: digest@policy-lab.test\r\nSubject: Re: {asked['Subject']}\r\n"
         f"Message-ID: <demo-8@policy-lab.test>\r\nIn-Reply-To: {asked['Message-ID']}\r\n\r\nYes, please stop.\r\n")
mailbox.Maildir(sys.argv[2]).add(reply.encode())
PY
digest-mailer requests process --maildir requests | grep -v "already processed"
step "one message fails while it is acted on (here the database refuses its row): it is held with the error named, and the run goes on"
python3 - "$work/subscribers/digest.db" "$work/requests" <<'PY'
import mailbox, sqlite3, sys
with sqlite3.connect(sys.argv[1]) as db:  # a stand-in for any unexpected failure
    db.execute("CREATE TRIGGER demo_fault BEFORE INSERT ON email_requests WHEN NEW.label = 'subscribe'"
               " AND NEW.from_address = 'faulty@newsroom.test' BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
box = mailbox.Maildir(sys.argv[2])
box.add(b"From: faulty@newsroom.test\r\nTo: digest@policy-lab.test\r\nSubject: subscribe\r\nMessage-ID: <demo-6@newsroom.test>\r\n\r\nPlease add me.\r\n")
box.add(b"From: gil.santos@policy-lab.test\r\nTo: digest@policy-lab.test\r\nSubject: unsubscribe\r\nMessage-ID: <demo-7@policy-lab.test>\r\n\r\nPlease remove me.\r\n")
PY
digest-mailer requests process --maildir requests || true
python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("DROP TRIGGER demo_fault")' "$work/subscribers/digest.db"
step "what waits for staff"
digest-mailer requests review

step "serve the unsubscribe pages; a mail provider's RFC 8058 one-click POST unsubscribes"
webport="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
digest-mailer serve --port "$webport" 2> serve.log &
web=$!
trap 'kill $capture $web 2>/dev/null || true; wait 2>/dev/null || true' EXIT
python3 - "$work/captured" "$webport" <<'PY'
import mailbox, re, socket, sys, time, urllib.request
from email import message_from_bytes, policy
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
for m in mailbox.Maildir(sys.argv[1]):
    msg = message_from_bytes(m.as_bytes(), policy=policy.default)
    if msg["To"].addresses[0].addr_spec == "ana.lima@policy-lab.test" and not str(msg["Subject"]).startswith("[TEST]"):
        break
link = re.search(r"<(https?://[^>]+)>", str(msg["List-Unsubscribe"])).group(1)
local = link.replace("https://digest.policy-lab.test", f"http://127.0.0.1:{sys.argv[2]}")
print(f"  List-Unsubscribe: {link}")
page = urllib.request.urlopen(local).read().decode()
print("  GET shows:", "a***@policy-lab.test" in page and "the masked address and an Unsubscribe button")
reply = urllib.request.urlopen(urllib.request.Request(local, data=b"List-Unsubscribe=One-Click", method="POST"))
print(f"  one-click POST: {reply.status} {reply.read().decode().strip()}")
PY
digest-mailer subscribers list --status unsubscribed

step "the public archive: the issue's page (its 'View in your browser' link), the index and the Atom feed"
python3 - "$work/captured" "$webport" <<'PY'
import mailbox, re, sys, urllib.request
import feedparser
from email import message_from_bytes, policy
base = f"http://127.0.0.1:{sys.argv[2]}"
for m in mailbox.Maildir(sys.argv[1]):
    msg = message_from_bytes(m.as_bytes(), policy=policy.default)
    if not str(msg["Subject"]).startswith(("[TEST]", "Confirm")) and msg.get_body(("plain",)):
        text = msg.get_body(("plain",)).get_content()
        if "View in your browser" in text:
            break
view = re.search(r"View in your browser: (\S+)", text).group(1)
print(f"  in every message (no token, the same for all): View in your browser: {view}")
page = urllib.request.urlopen(view.replace("https://digest.policy-lab.test", base)).read().decode()
print("  the page:", re.search(r"<title>(.*?)</title>", page).group(1), "|",
      re.search(r'<link rel="canonical" href="([^"]+)"', page).group(1))
index = urllib.request.urlopen(base + "/archive/").read().decode()
print("  /archive/ lists:", ", ".join(re.findall(r'<h2><a href="[^"]+">([^<]+)</a>', index)))
feed = feedparser.parse(urllib.request.urlopen(base + "/feed.atom").read())
print(f"  /feed.atom: Atom, well-formed: {not feed.bozo}, {len(feed.entries)} entry: {feed.entries[0].link}")
PY
step "a reader signs up on the web form: a confirmation mail, the link, then one welcome mail"
python3 - "$webport" <<'PY'
import re, sys, time, urllib.parse, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
form = urllib.request.urlopen(base + "/subscribe").read().decode()
token = re.search(r'name="token" value="([^"]+)"', form).group(1)
time.sleep(2.1)  # the form refuses posts faster than a person (2 s)
body = urllib.parse.urlencode({"token": token, "email": "farah.nasser@think.test", "name": "Farah Nasser", "comment": ""})
page = urllib.request.urlopen(base + "/subscribe", data=body.encode()).read().decode()
print("  POST /subscribe:", re.search(r"<h1>(.*?)</h1>", page).group(1))
PY
digest-mailer subscribers show farah.nasser@think.test | sed -n '1,3p'
digest-mailer requests process --maildir requests | tail -n 1   # sends what the outbox holds
python3 - "$work/captured" "$webport" <<'PY'
import mailbox, re, sys, urllib.request
from email import message_from_bytes, policy
base = f"http://127.0.0.1:{sys.argv[2]}"
mails = [message_from_bytes(m.as_bytes(), policy=policy.default) for m in mailbox.Maildir(sys.argv[1])]
confirm = next(m for m in mails if "farah" in str(m["To"]) and str(m["Subject"]).startswith("Confirm"))
link = re.search(r"https://\S+/c/[0-9a-f]{32}", confirm.get_body(("plain",)).get_content()).group(0)
print(f"  captured: {confirm['Subject']}\n  link: {link}")
page = urllib.request.urlopen(urllib.request.Request(link.replace("https://digest.policy-lab.test", base), data=b"", method="POST")).read().decode()
print("  POST on the link:", re.search(r"<h1>(.*?)</h1>", page).group(1))
PY
digest-mailer requests process --maildir requests | tail -n 1
python3 - "$work/captured" <<'PY'
import mailbox, sys
from email import message_from_bytes, policy
mails = [message_from_bytes(m.as_bytes(), policy=policy.default) for m in mailbox.Maildir(sys.argv[1])]
welcome = [m for m in mails if "farah" in str(m["To"]) and not str(m["Subject"]).startswith("Confirm")]
print(f"  captured: {len(welcome)} welcome message: {welcome[0]['Subject']}")
text = welcome[0].get_body(("plain",)).get_content()
print("  it links the latest issue:", next(line.strip() for line in text.splitlines() if "/archive/" in line))
PY

step "export the archive as static files for the think-tank's website"
digest-mailer archive export site --base-url https://www.policy-lab.test/digest/
(cd site && find . -type f | sort | sed 's/^/  /')
kill $web; wait $web 2>/dev/null || true

step "schedule the next issue a few seconds ahead (after its test send); \`run\` sends it when due"
sed -e 's/^Vol: 2.4/Vol: 2.5/' -e 's/Vol 2.4/Vol 2.5/' vol-2.4.txt > vol-2.5.txt
digest-mailer send vol-2.5.txt --test | tail -n 1
digest-mailer schedule vol-2.5.txt --at "$(date -u -d '+4 seconds' '+%Y-%m-%d %H:%M:%S')" --tz UTC
digest-mailer schedule list
digest-mailer run --no-web --log-format json 2> run.log &
service=$!
trap 'kill $capture $service 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  digest-mailer schedule list --json | grep -q '"state": "sent"' && break
  sleep 0.5
done
kill -TERM $service; wait $service || true
python3 - "$work/run.log" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    entry = json.loads(line)
    if entry["job"].startswith(("schedule", "service")):
        fields = {k: v for k, v in entry["fields"].items() if k in ("issue", "sent", "state", "recipients", "signal")}
        print(f"  {entry['time'][11:19]}  {entry['job']:<12} {entry['event']:<14} {fields if fields else ''}")
PY
digest-mailer schedule list

step "how the issues did: the report of one, and the HTML report across issues (inline SVG charts)"
digest-mailer report 2.4
digest-mailer report --since "$(date -u '+%Y-%m-%d')" --html report.html

kill $capture; wait $capture 2>/dev/null || true
trap - EXIT
printf '\nHTML preview:       %s\n' "$work/vol-2.4/issue.html"
printf 'Pictures:           %s\n' "$(ls "$work"/vol-2.4/issue-*.png 2>/dev/null | tr '\n' ' ' || true)"
printf 'Plain text:         %s\n' "$work/vol-2.4/issue.txt"
printf 'Preview message:    %s\n' "$work/vol-2.4/preview.eml"
printf 'Captured messages:  %s (%s files)\n' "$work/captured/new" "$(ls "$work/captured/new" | wc -l)"
printf 'Archive export:     %s\n' "$work/site/index.html"
printf 'Report:             %s\n' "$work/report.html"
printf 'Store and config:   %s\n' "$work"
