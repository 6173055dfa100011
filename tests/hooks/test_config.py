"""hooks.yaml: loaded with positions, every problem at path:line:col; the signature's own pieces."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from pathlib import Path

from standardwebhooks import Webhook

from app.configdir import load_config
from app.hooks.config import load_hooks
from app.hooks.signing import key_of, new_secret, sign
from tests.helpers import CONFIG, REPO, problems_as_shown

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None, required: bool = False) -> list[str]:
    path = tmp_path / "hooks.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    result = load_hooks(path, env=env or {}, env_required=required)
    return problems_as_shown(result, tmp_path, result.hooks)


def test_a_good_file_gives_the_webhooks_and_who_takes_each_event(tmp_path: Path) -> None:
    path = tmp_path / "hooks.yaml"
    path.write_text(
        textwrap.dedent(f"""
        version: 1
        webhooks:
          - name: crm
            url: http://crm.internal/hotline/events?token=${{CRM_TOKEN}}
            events: [ticket.created, call.completed, survey.answered, callback.booked]
            secret: ${{CRM_WEBHOOK_SECRET}}
            timeout: 5s
          - name: audit
            url: https://audit.example.com/in
            events: [ticket.created]
            secret: {SECRET}
        """),
        encoding="utf-8",
    )
    result = load_hooks(path, env={"CRM_WEBHOOK_SECRET": SECRET, "CRM_TOKEN": "t0ken"})
    assert result.problems == [] and result.hooks is not None
    crm, audit = result.hooks.webhooks
    assert audit.events == {"ticket.created"}
    assert crm.url == "http://crm.internal/hotline/events?token=t0ken" and crm.timeout == 5.0
    assert crm.logged == "http://crm.internal/hotline/events"  # what logs show: no query, no secret
    assert "t0ken" not in repr(crm) and "kkkk" not in repr(crm)
    assert crm.key == b"k" * 32
    assert result.hooks.subscriptions() == {
        "ticket.created": ("crm", "audit"),
        "call.completed": ("crm",),
        "survey.answered": ("crm",),
        "callback.booked": ("crm",),
    }


def test_no_file_is_no_webhooks(tmp_path: Path) -> None:
    result = load_hooks(tmp_path)
    assert result.problems == [] and result.hooks is not None and result.hooks.webhooks == ()


def test_problems_are_reported_where_they_are(tmp_path: Path) -> None:
    problems = _load(
        tmp_path,
        f"""
        version: 1
        webhooks:
          - name: crm
            url: ftp://crm.internal/x
            events: [ticket.create, call.completed]
            secret: whsec_not-base64!
          - name: crm
            url: http://b.example.com/
            events: [survey.answered]
            secret: {SECRET}
            retries: 3
        """,
    )
    assert problems == ["hooks.yaml:11:5: error: the hooks file, in webhooks.1, has an unknown key 'retries'"]
    problems = _load(
        tmp_path,
        f"""
        version: 1
        webhooks:
          - name: crm
            url: ftp://crm.internal/x
            events: [ticket.create, call.completed]
            secret: whsec_not-base64!
          - name: crm
            url: http://b.example.com/
            events: [survey.answered]
            secret: {SECRET}
        """,
    )
    assert problems == [
        "hooks.yaml:5:14: error: webhook 'crm': unknown event 'ticket.create' (did you mean 'ticket.created'?) "
        "(events: ticket.created, call.completed, survey.answered, callback.booked)",
        "hooks.yaml:4:10: error: webhook 'crm' url 'ftp://crm.internal/x' is not an http:// or https:// URL "
        "with a host",
        "hooks.yaml:6:13: error: webhook 'crm': the secret is not base64 after whsec_; it must be whsec_ + "
        "base64 (`hotline hooks secret` prints a new one)",
        "hooks.yaml:7:11: error: webhook 'crm' is named twice (first: webhook 1)",
    ]


def test_a_missing_secret_warns_at_check_and_stops_the_server(tmp_path: Path) -> None:
    text = """
        version: 1
        webhooks:
          - {name: crm, url: "http://crm.internal/", events: [ticket.created], secret: "${CRM_SECRET}"}
        """
    assert _load(tmp_path, text) == [
        "hooks.yaml:3:81: warning: webhook 'crm' secret uses ${CRM_SECRET}, which is not set in the "
        "environment; `hotline serve` refuses to start without it"
    ]
    assert _load(tmp_path, text, required=True) == [
        "hooks.yaml:3:81: error: webhook 'crm' secret uses ${CRM_SECRET}, which is not set in the environment"
    ]
    shown = _load(tmp_path, text, env={"CRM_SECRET": "hunter2-hunter2"})
    assert shown == [
        "hooks.yaml:3:80: error: webhook 'crm': the value of ${CRM_SECRET} does not start with whsec_; it "
        "must be whsec_ + base64 (`hotline hooks secret` prints a new one)"
    ]
    assert "hunter2" not in shown[0]


def test_hotline_check_reads_hooks_yaml_beside_the_menu(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    (folder / "hooks.yaml").write_text(
        "version: 1\nwebhooks:\n  - {name: crm, url: 'http://x.example/', events: [ticket.created, "
        "survey.answerd], secret: " + SECRET + "}\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "app", "check", "--config", str(folder)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert (
        f"{folder}/hooks.yaml:3:68: error: webhook 'crm': unknown event 'survey.answerd' (did you mean 'survey.answered'?)"
        in out.stdout
    )
    (folder / "hooks.yaml").write_text(
        "version: 1\nwebhooks:\n  - {name: crm, url: 'http://x.example/', events: [ticket.created], "
        "secret: " + SECRET + "}\n",
        encoding="utf-8",
    )
    result = load_config(folder)
    assert result.graph is not None and [h.name for h in result.hooks.webhooks] == ["crm"]


def test_the_shipped_config_has_no_active_webhook() -> None:
    result = load_config(CONFIG)
    assert result.graph is not None and result.hooks.webhooks == ()


def test_a_signature_is_what_the_standard_webhooks_library_checks() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(key_of(secret)) == 32
    body = '{"type":"ticket.created","timestamp":"2026-12-03T08:00:00.000Z","data":{"id":"T1"}}'
    import time

    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(key_of(secret), "msg_1", now, body.encode()),
    }
    assert Webhook(secret).verify(body, headers)["data"] == {"id": "T1"}
