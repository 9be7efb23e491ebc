"""The event catalog: every WorkDev event type, its category, retention, event_data schema and hourly volume
thresholds.

This module is the one source of truth for event types. ``workdev-pipeline migrate`` seeds it into
the ``event_schemas`` table, which is what the SQL emit functions and the pipeline read; nothing else
hard-codes a list of types.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

JSONSchema = dict[str, Any]

#: Default ceiling on the serialized size of one event's ``event_data`` (bytes).
DEFAULT_MAX_PAYLOAD_BYTES = 32_768


@dataclass(frozen=True)
class Category:
    """An event category and how long its events are kept."""

    name: str
    retention_days: int
    description: str

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)


TRANSACTION = Category("transaction", 7 * 365 + 2, "Financial and contractual events (7 years, legal).")
INTERACTION = Category("interaction", 365, "Browsing and engagement events (1 year, analytics).")
USER_ACTIVITY = Category("user_activity", 2 * 365 + 1, "Authentication and account events (2 years, security).")
CONTENT = Category("content", 7 * 365 + 2, "User-generated content events (7 years).")

CATEGORIES: dict[str, Category] = {c.name: c for c in (TRANSACTION, INTERACTION, USER_ACTIVITY, CONTENT)}


@dataclass(frozen=True)
class VolumeThresholds:
    """How far a type's count in a closed hour may stray from the same hour of the week in the previous weeks
    before the ``volumes_within_history`` check flags it (``workdev_pipeline/aggregations/anomalies.py``).

    The expected range is ``median ± max(deviations × σ, tolerance × median)`` (floored at 0), where ``σ`` is
    the robust deviation ``1.4826 × MAD`` of the history, never below the Poisson noise ``√median``. Above it:
    a spike (WARN); below it: a drop (WARN); 0 events where the median is at least ``silent_min_median``: the
    type went silent (ERROR)."""

    #: the half-width of the expected range in robust standard deviations
    deviations: float = 4.0
    #: the half-width at least, as a fraction of the median (steady, busy types do not flag small swings)
    tolerance: float = 0.25
    #: the median hourly count from which 0 events is "silent" (an ERROR) rather than noise
    silent_min_median: float = 10.0

    def __post_init__(self) -> None:
        if self.deviations <= 0 or self.tolerance < 0 or self.silent_min_median < 0:
            raise ValueError(f"invalid volume thresholds {self}")


#: The thresholds of a type that sets none (``EventType.volume`` None).
DEFAULT_VOLUME_THRESHOLDS = VolumeThresholds()


@dataclass(frozen=True)
class EventType:
    """One registered event type."""

    name: str
    category: Category
    description: str
    properties: JSONSchema
    required: tuple[str, ...] = ()
    requires_user: bool = True
    entity_type: str | None = None
    amount_field: str | None = None
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    active: bool = True
    #: the hourly volume check's thresholds for this type; None: ``DEFAULT_VOLUME_THRESHOLDS``
    volume: VolumeThresholds | None = None

    @property
    def volume_thresholds(self) -> VolumeThresholds:
        return self.volume or DEFAULT_VOLUME_THRESHOLDS

    @property
    def json_schema(self) -> JSONSchema:
        """The JSON Schema (draft 2020-12) of this type's ``event_data``, with the personal-data marks
        (``x-personal``, ``x-user-ref``) and those of ``metadata`` (``x-metadata``)."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.name,
            "type": "object",
            "properties": {**COMMON_PERSONAL_PROPERTIES, **self.properties},
            "required": list(self.required),
            "additionalProperties": True,
            "x-metadata": METADATA_SCHEMA,
        }

    @property
    def personal_fields(self) -> tuple[PersonalField, ...]:
        """Every field of ``event_data`` marked ``x-personal``, at any depth."""
        return tuple(f for f in marked_fields(self.json_schema) if f.kind != USER_REF)

    @property
    def user_refs(self) -> tuple[PersonalField, ...]:
        """Every field of ``event_data`` marked ``x-user-ref`` (another user's id), at any depth."""
        return tuple(f for f in marked_fields(self.json_schema) if f.kind == USER_REF)

    @property
    def version(self) -> str:
        """A content hash of everything that defines the type; changes whenever the definition does."""
        body = json.dumps(
            [self.category.name, self.json_schema, self.requires_user, self.max_payload_bytes, self.active,
             self.entity_type, self.amount_field],
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]


# -- personal data ------------------------------------------------------------------------------
#: Kinds of personal data a field is marked with (``"x-personal": kind``). Values of the identifying kinds are
#: looked for, and scrubbed, in every other event when their owner is erased; the others are only removed from
#: the owner's own events.
IDENTIFYING_KINDS = ("email", "phone", "address", "name")
PERSONAL_KINDS = (*IDENTIFYING_KINDS, "free-text", "ip_address", "user_agent", "device_id", "session")
#: The kind of a field marked ``"x-user-ref": true``: the id of a user (usually another one than the event's).
USER_REF = "user-ref"
#: Array items in a :class:`PersonalField` path.
ITEMS = "[]"


@dataclass(frozen=True)
class PersonalField:
    """A marked field: its path from the payload's root (object keys; :data:`ITEMS` for every array item), and for
    a value that belongs to a referenced user rather than to the event's (``"x-owner": "<sibling user ref>"``),
    the path of that reference."""

    path: tuple[str, ...]
    kind: str
    owner: tuple[str, ...] | None = None

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def marked_fields(schema: JSONSchema, path: tuple[str, ...] = ()) -> list[PersonalField]:
    """The ``x-personal`` / ``x-user-ref`` fields of a JSON Schema, at any depth (``properties``, ``items``)."""
    found: list[PersonalField] = []
    if path and schema.get("x-user-ref"):
        found.append(PersonalField(path, USER_REF))
    if path and schema.get("x-personal"):
        kind = schema["x-personal"]
        if kind not in PERSONAL_KINDS:
            raise ValueError(f"{'.'.join(path)}: unknown x-personal kind {kind!r}; known: {PERSONAL_KINDS}")
        owner = (*path[:-1], schema["x-owner"]) if schema.get("x-owner") else None
        found.append(PersonalField(path, kind, owner))
    for key, sub in schema.get("properties", {}).items():
        found += marked_fields(sub, (*path, key))
    if isinstance(schema.get("items"), dict):
        found += marked_fields(schema["items"], (*path, ITEMS))
    return found


def _personal(kind: str, **schema: Any) -> JSONSchema:
    return {**schema, "x-personal": kind}


_EMAIL = _personal("email", type="string", maxLength=320)
_PHONE = _personal("phone", type="string", maxLength=64)
_ADDRESS = _personal("address")
_USER_REF = {"type": "string", "format": "uuid", "x-user-ref": True}
#: Keys the seed's GDPR statement removes from every event's payload (``event_data - 'email' - 'phone' -
#: 'address'``): marked on every type, whatever its own properties. Erasure also removes them at any depth.
COMMON_PERSONAL_PROPERTIES: JSONSchema = {"email": {"x-personal": "email"}, "phone": {"x-personal": "phone"},
                                          "address": {"x-personal": "address"}}
#: ``metadata``'s personal keys (the client's context), the same for every type.
METADATA_SCHEMA: JSONSchema = {
    "type": "object",
    "properties": {"ip_address": {"x-personal": "ip_address"}, "user_agent": {"x-personal": "user_agent"},
                   "device_fingerprint": {"x-personal": "device_id"}},
}
METADATA_PERSONAL_FIELDS: tuple[PersonalField, ...] = tuple(marked_fields(METADATA_SCHEMA))

# -- reusable property schemas ------------------------------------------------------------------
_UUID = {"type": "string", "format": "uuid"}
_MONEY = {"type": "number", "minimum": 0}
_SHORT_TEXT = {"type": "string", "maxLength": 500}
_FREE_TEXT = _personal("free-text", type="string", maxLength=500)
_SKILLS = {"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 50}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}


def _t(name: str, category: Category, description: str, properties: JSONSchema | None = None,
       required: tuple[str, ...] = (), **kwargs: Any) -> EventType:
    return EventType(name, category, description, properties or {}, required, **kwargs)


EVENT_TYPES: tuple[EventType, ...] = (
    # -- transaction (7 years) --
    _t("project.created", TRANSACTION, "A client posted a project.",
       {"title": _SHORT_TEXT, "budget": _MONEY, "project_type": {"enum": ["fixed", "hourly"]},
        "is_featured": {"type": "boolean"}, "skills": _SKILLS},
       ("title", "budget", "project_type"), entity_type="project", amount_field="budget"),
    _t("project.updated", TRANSACTION, "A client changed a project.",
       {"changed_fields": {"type": "array", "items": {"type": "string"}}}, ("changed_fields",),
       entity_type="project"),
    _t("project.deleted", TRANSACTION, "A client removed a project.",
       {"reason": _FREE_TEXT}, entity_type="project"),
    _t("proposal.submitted", TRANSACTION, "A developer bid on a project.",
       {"project_id": _UUID, "bid_amount": _MONEY}, ("project_id", "bid_amount"),
       entity_type="proposal", amount_field="bid_amount"),
    _t("proposal.accepted", TRANSACTION, "A client accepted a proposal.",
       {"project_id": _UUID, "bid_amount": _MONEY}, ("project_id",), entity_type="proposal",
       amount_field="bid_amount"),
    _t("proposal.rejected", TRANSACTION, "A client rejected a proposal.",
       {"project_id": _UUID, "reason": _FREE_TEXT}, ("project_id",), entity_type="proposal"),
    _t("milestone.created", TRANSACTION, "A milestone was set on a contract.",
       {"project_id": _UUID, "amount": _MONEY, "due_date": {"type": "string", "format": "date"}},
       ("project_id", "amount"), entity_type="milestone", amount_field="amount"),
    _t("milestone.approved", TRANSACTION, "A client approved a milestone (financial).",
       {"project_id": _UUID, "amount": _MONEY}, ("project_id", "amount"), entity_type="milestone",
       amount_field="amount"),
    _t("milestone.completed", TRANSACTION, "A developer delivered a milestone.",
       {"project_id": _UUID, "amount": _MONEY}, ("project_id",), entity_type="milestone",
       amount_field="amount"),
    _t("payment.initiated", TRANSACTION, "A payment was started.",
       {"amount": _MONEY, "currency": _CURRENCY, "milestone_id": _UUID}, ("amount", "currency"),
       entity_type="payment", amount_field="amount"),
    _t("payment.completed", TRANSACTION, "A payment settled.",
       {"amount": _MONEY, "currency": _CURRENCY, "milestone_id": _UUID}, ("amount", "currency"),
       entity_type="payment", amount_field="amount"),
    _t("payment.failed", TRANSACTION, "A payment failed.",
       {"amount": _MONEY, "currency": _CURRENCY, "failure_code": {"type": "string", "maxLength": 64}},
       ("amount", "currency", "failure_code"), entity_type="payment", amount_field="amount"),
    # -- interaction (1 year) --
    _t("profile.viewed", INTERACTION, "Someone viewed a developer profile.",
       {"profile_user_id": _USER_REF}, ("profile_user_id",), requires_user=False, entity_type="profile"),
    _t("project.viewed", INTERACTION, "Someone viewed a project.",
       {"project_id": _UUID}, ("project_id",), requires_user=False, entity_type="project"),
    _t("search.performed", INTERACTION, "A marketplace search ran.",
       {"query": _personal("free-text", type="string", maxLength=1000), "filters": {"type": "object"},
        "results_count": {"type": "integer", "minimum": 0},
        "search_time_ms": {"type": "number", "minimum": 0}},
       ("query", "results_count", "search_time_ms"), requires_user=False),
    _t("filter.applied", INTERACTION, "A search filter was applied.",
       {"filter_name": {"type": "string", "maxLength": 100}, "filter_value": {}}, ("filter_name",),
       requires_user=False),
    _t("message.sent", INTERACTION, "A user sent a message.",
       {"conversation_id": _UUID, "recipient_user_id": _USER_REF,
        "recipient_email": {**_EMAIL, "x-owner": "recipient_user_id"},
        "length": {"type": "integer", "minimum": 0}},
       ("conversation_id",), entity_type="message"),
    _t("notification.clicked", INTERACTION, "A user clicked a notification.",
       {"notification_type": {"type": "string", "maxLength": 100}}, ("notification_type",),
       entity_type="notification"),
    # -- user activity (2 years) --
    _t("user.login", USER_ACTIVITY, "A user signed in.",
       {"method": {"enum": ["password", "github", "google", "magic_link", "sso"]},
        "mfa_used": {"type": "boolean"}}, ("method",)),
    _t("user.logout", USER_ACTIVITY, "A user signed out."),
    _t("user.registered", USER_ACTIVITY, "A new account was created.",
       {"role": {"enum": ["client", "developer"]}, "signup_source": {"type": "string", "maxLength": 100}},
       ("role",)),
    _t("session.started", USER_ACTIVITY, "A browsing session began."),
    _t("session.ended", USER_ACTIVITY, "A browsing session ended.",
       {"duration_seconds": {"type": "number", "minimum": 0}}),
    _t("password.changed", USER_ACTIVITY, "A user changed their password."),
    _t("mfa.enabled", USER_ACTIVITY, "A user enabled multi-factor authentication.",
       {"method": {"enum": ["totp", "sms", "webauthn"]}}, ("method",)),
    _t("mfa.disabled", USER_ACTIVITY, "A user disabled multi-factor authentication."),
    # -- content (7 years) --
    _t("review.posted", CONTENT, "A review was posted.",
       {"reviewee_user_id": _USER_REF, "comment": _FREE_TEXT, "reviewee_type": {"enum": ["client", "developer"]},
        "rating_overall": {"type": "number", "minimum": 0, "maximum": 5}},
       ("reviewee_user_id", "reviewee_type", "rating_overall"), entity_type="review"),
    _t("review.updated", CONTENT, "A review was edited.",
       {"rating_overall": {"type": "number", "minimum": 0, "maximum": 5}}, entity_type="review"),
    _t("portfolio.created", CONTENT, "A developer added a portfolio item.",
       {"title": _SHORT_TEXT, "skills": _SKILLS}, ("title",), entity_type="portfolio"),
    _t("portfolio.updated", CONTENT, "A developer edited a portfolio item.",
       {"changed_fields": {"type": "array", "items": {"type": "string"}}}, entity_type="portfolio"),
    _t("profile.updated", CONTENT, "A user edited their profile.",
       {"changed_fields": {"type": "array", "items": {"type": "string"}},
        "display_name": _personal("name", type="string", maxLength=200),
        "contact": {"type": "object", "properties": {"email": _EMAIL, "phone": _PHONE, "address": _ADDRESS}},
        "bio": _FREE_TEXT}, ("changed_fields",),
       entity_type="profile"),
    _t("github.synced", CONTENT, "A developer's GitHub repositories were synced.",
       {"repositories": {"type": "integer", "minimum": 0}}, ("repositories",), entity_type="profile"),
)

EVENT_TYPES_BY_NAME: dict[str, EventType] = {t.name: t for t in EVENT_TYPES}


def get_event_type(name: str) -> EventType:
    """Return the registered type ``name``; raise ``KeyError`` naming it when it is not registered."""
    try:
        return EVENT_TYPES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown event type {name!r}") from None


def types_in_category(category: str) -> list[EventType]:
    """All registered types of one category."""
    if category not in CATEGORIES:
        raise KeyError(f"unknown event category {category!r}; known: {sorted(CATEGORIES)}")
    return [t for t in EVENT_TYPES if t.category.name == category]


def amount_fields() -> dict[str, str]:
    """{event type: its amount field} -- the one place saying which top-level key of ``event_data`` is a type's
    amount (synced into ``event_schemas.amount_field``; read by the lake's typed ``amount`` column, see
    ``aggregations/amounts.py``, and by the aggregations)."""
    return {t.name: t.amount_field for t in EVENT_TYPES if t.amount_field}


def event_schema_rows() -> list[dict[str, Any]]:
    """The catalog as rows of the ``event_schemas`` table."""
    return [
        {
            "event_type": t.name,
            "event_category": t.category.name,
            "retention_days": t.category.retention_days,
            "json_schema": t.json_schema,
            "required_keys": list(t.required),
            "requires_user": t.requires_user,
            "entity_type": t.entity_type,
            "amount_field": t.amount_field,
            "max_payload_bytes": t.max_payload_bytes,
            "description": t.description,
            "version": t.version,
            "active": t.active,
        }
        for t in EVENT_TYPES
    ]
