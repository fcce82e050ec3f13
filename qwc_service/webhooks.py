"""Webhooks: telling an integrator's system that a job is settled.

When a job reaches done, failed, in_doubt or cancelled, ``on_settled``
writes a ``WebhookDelivery`` row in the same transaction (an outbox), so a
delivery is never lost even if the process dies a moment later. Sending
happens elsewhere, later, with retries, and never inside a Web Connector call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Connection, Job, WebhookDelivery

#: The job states that trigger a webhook.
SETTLED = frozenset({"done", "failed", "in_doubt", "cancelled"})
SIGNATURE_HEADER = "X-QWC-Signature"


def on_settled(db: Session, job: Job, now: datetime) -> WebhookDelivery | None:
    """Queue a delivery for a job that has just settled, if anyone asked for one."""
    if job.state not in SETTLED:
        return None
    url = job.webhook_url or db.scalar(select(Connection.webhook_url).where(Connection.id == job.connection_id))
    if not url:
        return None
    delivery = WebhookDelivery(
        job_id=job.id,
        url=url,
        event=job.state,
        payload=json.dumps(payload(db, job, now), separators=(",", ":"), sort_keys=True),
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    db.add(delivery)
    return delivery


def payload(db: Session, job: Job, now: datetime) -> dict[str, object]:
    """What the receiver gets: enough to act, never the qbXML payloads themselves."""
    name = db.scalar(select(Connection.name).where(Connection.id == job.connection_id))
    return {
        "event": f"job.{job.state}",
        "job": {
            "id": job.id,
            "connection": name,
            "state": job.state,
            "request_types": job.request_types.split(),
            "status_code": job.status_code,
            "status_severity": job.status_severity,
            "status_message": job.status_message,
            "hresult": job.hresult,
            "error": job.error,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        },
        "sent_at": now.isoformat(),
    }


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` of the body, keyed with the connection's webhook secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
