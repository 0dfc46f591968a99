#!/usr/bin/env bash
# The main job on embedded defaults, in a fresh temporary folder: a SQLite store,
# subscribers imported from a spreadsheet export, a seed list, and the history kept.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d -t digest-demo.XXXXXX)"
cd "$work"
cat > config.toml <<TOML
[newsletter]
title = "Policy Digest"
from_name = "Policy Digest"
from_address = "digest@policy-lab.test"
request_address = "digest@policy-lab.test"
postal_address = "Policy Lab, 1 Example Street, Springfield"

[subscribers]
# the demo's invented people live on .test domains
allow_test_domains = true
TOML
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "digest-mailer init  (SQLite store in $work/subscribers/digest.db)"
digest-mailer init
step "import a spreadsheet export (semicolons, a duplicate, one broken row)"
digest-mailer subscribers import "$here/subscribers/demo.example.csv"
step "add the seed list for test sends"
digest-mailer subscribers add editor@policy-lab.test --name "Seed Editor" --list seed
digest-mailer subscribers add ana.lima@policy-lab.test --list seed
step "a reader asks to be removed"
digest-mailer subscribers remove eitan.roth@press.test --reason "asked at the conference"
step "importing the same file again does not bring them back"
digest-mailer subscribers import "$here/subscribers/demo.example.csv"
step "subscribers"
digest-mailer subscribers list
step "one subscriber's history"
digest-mailer subscribers show eitan.roth@press.test
step "lists"
digest-mailer lists list
step "compose the sample issue (digest text as staff write it) and lint it"
cp "$here/examples/vol-2.4.txt" "$work/vol-2.4.txt"
digest-mailer compose "$work/vol-2.4.txt" --out "$work/vol-2.4"
printf 'HTML preview: %s\nPlain text:   %s\nMessage:      %s\n' \
  "$work/vol-2.4/issue.html" "$work/vol-2.4/issue.txt" "$work/vol-2.4/preview.eml"
printf '\nThe demo store is in %s\n' "$work"
