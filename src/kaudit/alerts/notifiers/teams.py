"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is
received"): a message with one Adaptive Card attachment, which the flow posts to its
channel. The card holds the rendered text and the alert's facts; Workflows answers 202.
"""

from __future__ import annotations

from typing import Any

import orjson

from kaudit.alerts.notifiers.base import message_text, post_json
from kaudit.alerts.state import AlertRecord
from kaudit.config.alert_syntax import ESCAPES
from kaudit.config.alerts import TeamsNotify
from kaudit.exporters.http import make_client

_COLOR = {"critical": "Attention", "high": "Attention", "medium": "Warning"}


def card(title: str, text: str, facts: list[tuple[str, str]], color: str) -> dict[str, Any]:
    """A Workflows message carrying one Adaptive Card (schema 1.4)."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": title,
                            "weight": "Bolder",
                            "size": "Medium",
                            "color": color,
                            "wrap": True,
                        },
                        {"type": "TextBlock", "text": text, "wrap": True},
                        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts]},
                    ],
                },
            }
        ],
    }


class TeamsNotifier:
    def __init__(self, target: TeamsNotify) -> None:
        self.target = target
        self.client = make_client(target.timeout)

    def payload(self, alert: AlertRecord) -> dict[str, Any]:
        info = alert.data["alert"]
        resolved = alert.status == "resolved"
        title = f"{'Resolved' if resolved else 'Alert'}: {info['rule']} ({info['severity']})"
        quote = ESCAPES["teams"]
        group = ", ".join(f"{k}={v}" for k, v in info["group"].items())
        facts = [
            ("Rule", quote(str(info["rule"]))),
            ("Severity", quote(str(info["severity"]))),
            ("Count", str(info["count"])),
            ("Group", quote(group) or "-"),
            ("Time", quote(str(info["at"]))),
        ]
        color = "Good" if resolved else _COLOR.get(str(info["severity"]), "Default")
        # Adaptive Card TextBlocks and facts read Markdown: values are escaped for it.
        return card(title, message_text(self.target.template, alert, "teams"), facts, color)

    def send(self, alert: AlertRecord) -> None:
        body = orjson.dumps(self.payload(alert))
        post_json(self.client, "teams alert", self.target.url.get_secret_value(), body)

    def close(self) -> None:
        self.client.close()
