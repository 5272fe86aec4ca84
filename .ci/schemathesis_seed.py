"""Seeds a running Assent for the schemathesis run and writes its config.

Tokens in paths are random, so generated ones only ever reach the 404
answers. This signs two people up, reads their confirmation emails from the
file mail directory, confirms one of them, reads that subscription's
unsubscribe link from the admin audience, and writes a schemathesis.toml
that offers these real tokens (half of the time) to the token routes, so
the success answers are checked against the document too.

Usage: schemathesis_seed.py BASE_URL MAIL_DIR ADMIN_KEY OUT_TOML
"""

import email
import email.policy
import json
import pathlib
import re
import sys
import time
import urllib.request

DEADLINE_SECS = 30


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as response:
        return response.status, response.read().decode()


def sign_up(base, address):
    body = json.dumps({"email": address, "consent": True, "list": "newsletter"}).encode()
    status, _ = request("POST", f"{base}/subscriptions", body, {"Content-Type": "application/json"})
    assert status == 202, f"sign-up of {address}: {status}"


def text_of(path):
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    return message["To"], part.get_content()


def links_by_address(mail_dir, addresses):
    """Waits (bounded) until each address has a confirmation email."""
    deadline = time.monotonic() + DEADLINE_SECS
    while True:
        found = {}
        for path in pathlib.Path(mail_dir).glob("*.eml"):
            to, text = text_of(path)
            for address in addresses:
                if address in to:
                    found[address] = text
        if len(found) == len(addresses):
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"no confirmation email for {set(addresses) - set(found)} within {DEADLINE_SECS}s")
        time.sleep(0.2)


def token_after(text, prefix):
    match = re.search(re.escape(prefix) + r"([A-Za-z0-9._~-]+)", text)
    assert match, f"no {prefix} link in the email"
    return match.group(1).rstrip(".")


def main():
    base, mail_dir, key, out = sys.argv[1:5]
    pending, confirmed = "pending@example.org", "confirmed@example.org"
    for address in (pending, confirmed):
        sign_up(base, address)
    texts = links_by_address(mail_dir, [pending, confirmed])
    confirm = {a: token_after(t, "/confirm/") for a, t in texts.items()}
    refuse = [token_after(t, "/refuse/") for t in texts.values()]
    status, _ = request("POST", f"{base}/confirm/{confirm[confirmed]}", b"", {"Accept": "application/json"})
    assert status == 200, f"confirming: {status}"
    _, audience = request(
        "GET", f"{base}/admin/lists/newsletter/audience", headers={"Authorization": f"Bearer {key}"}
    )
    leave = [json.loads(line)["unsubscribe_url"].rsplit("/", 1)[1] for line in audience.splitlines() if line]
    assert leave, "the audience is empty"

    def values(items):
        return json.dumps(sorted(set(items)))

    config = f"""# Written by .ci/schemathesis_seed.py: real tokens for the token routes.
[dictionaries.confirm_tokens]
values = {values(confirm.values())}

[dictionaries.leave_tokens]
values = {values(leave)}

[dictionaries.refuse_tokens]
values = {values(refuse)}

[dictionaries.slugs]
values = ["newsletter", "offers"]

[dictionaries.addresses]
values = ["{pending}", "{confirmed}"]

[[operations]]
include-path-regex = "^/confirm/"
parameters = {{ "path.token" = {{ dictionary = "confirm_tokens", probability = 0.5 }} }}

[[operations]]
include-path-regex = "^/(unsubscribe|withdraw)/"
parameters = {{ "path.token" = {{ dictionary = "leave_tokens", probability = 0.5 }} }}

[[operations]]
include-path-regex = "^/refuse/"
parameters = {{ "path.token" = {{ dictionary = "refuse_tokens", probability = 0.5 }} }}

[[operations]]
include-path-regex = "\\\\{{slug\\\\}}"
parameters = {{ "path.slug" = {{ dictionary = "slugs", probability = 0.5 }} }}

[[operations]]
include-path-regex = "^/admin/subjects/"
parameters = {{ "path.email" = {{ dictionary = "addresses", probability = 0.5 }} }}

[[operations]]
include-path = "/admin/subscribers"
parameters = {{ "query.email" = {{ dictionary = "addresses", probability = 0.5 }} }}
"""
    pathlib.Path(out).write_text(config)
    print(f"seeded: {len(confirm)} confirmation, {len(leave)} unsubscribe and {len(refuse)} refusal tokens")


if __name__ == "__main__":
    main()
