"""The composed issue checked the way mail clients and filters will see it: caniemail
support data, SpamAssassin, and a real browser at phone and desktop widths."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import lxml.html
import pytest
from conftest import DATA

from digest_mailer.composer import compose_file, write_outputs
from digest_mailer.message import preview_message

NODE_DIR = Path(__file__).parent / "node"
ISSUE = DATA / "issues" / "digest-vol-3.1.txt"
# Reported by caniemail but harmless where unsupported (see the issue's notes):
HARMLESS = {
    "<body> element",  # every client replaces it
    "@media",  # narrow-screen progressive enhancement only
    "display:none",  # the preheader; hidden by max-height/overflow where unsupported
    "overflow",  # the preheader; where unsupported, display:none already hides it
    "role attribute",  # role="presentation" on layout tables, for screen readers
}


@pytest.fixture
def outputs(newsletter_config, tmp_path: Path) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    composed = compose_file(ISSUE, newsletter_config)
    return write_outputs(composed, tmp_path / "out", preview_message(composed, newsletter_config))


def test_caniemail_support(outputs: dict[str, Path]) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@jsx-email" / "doiuse-email").exists():
        pytest.skip("node or @jsx-email/doiuse-email missing (.ci/run installs them)")
    result = subprocess.run(
        [node, str(NODE_DIR / "doiuse.mjs"), str(outputs["issue.html"]),
         "gmail.*", "outlook.*", "apple-mail.*"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    features = set()
    for error in report.get("errors", []):
        match = re.match(r"`(.+?)` is (?:not|only partially) supported by", error)
        assert match, error
        features.add(match.group(1))
    assert features <= HARMLESS, features - HARMLESS
    # the harmless ones stay where they are harmless
    root = lxml.html.parse(str(outputs["issue.html"])).getroot()
    for element in root.iter():
        style = (element.get("style") or "").replace(" ", "")
        if "display:none" in style or "overflow:" in style:
            assert "preheader" in element.get("class", ""), lxml.html.tostring(element)[:80]


def test_spamassassin_score(outputs: dict[str, Path], artifacts: Path) -> None:
    spamassassin = shutil.which("spamassassin")
    if spamassassin is None:
        pytest.skip("spamassassin is not installed (.ci/run installs it)")
    result = subprocess.run(
        [spamassassin, "-t", "-L"], input=outputs["preview.eml"].read_bytes(),
        capture_output=True, timeout=120,
    )  # fmt: skip
    report = result.stdout.decode("utf-8", "replace")
    (artifacts / "spamassassin-report.txt").write_text(report, "utf-8")
    match = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, re.MULTILINE)
    assert match, report[:2000]
    assert float(match.group(1)) < 1.0, report.split("Content analysis details:")[-1]


PAGE_CHECK = """() => {
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!node.textContent.trim() || el.closest('.preheader')) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    texts.push({text: node.textContent.trim().slice(0, 40),
                size: parseFloat(getComputedStyle(el).fontSize), right: box.right});
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          container: document.querySelector('table table').getBoundingClientRect().width,
          texts: texts};
}"""


def test_phone_and_desktop_rendering(browser, outputs: dict[str, Path], artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    url = outputs["issue.html"].as_uri()
    phone = browser.new_context(
        viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
        has_touch=True,
    )  # fmt: skip
    page = phone.new_page()
    page.goto(url)
    result = page.evaluate(PAGE_CHECK)
    page.screenshot(path=str(artifacts / "issue-phone-375.png"), full_page=True)
    phone.close()
    assert result["scrollWidth"] <= result["innerWidth"] == 375  # no sideways scrolling
    assert result["container"] <= 375
    assert result["texts"], "no visible text found"
    small = [t for t in result["texts"] if t["size"] < 14]
    assert not small, small[:5]
    assert max(t["right"] for t in result["texts"]) <= 375

    desktop = browser.new_context(viewport={"width": 1024, "height": 900})
    page = desktop.new_page()
    page.goto(url)
    result = page.evaluate(PAGE_CHECK)
    page.screenshot(path=str(artifacts / "issue-desktop-1024.png"), full_page=True)
    desktop.close()
    assert result["container"] == 600
    assert result["scrollWidth"] <= 1024
