"""Personal-field removal driven by the catalog (hypothesis): for every type and random payloads holding personal
values at the catalog's marked paths (at any depth, in arrays too) and under personal key names anywhere, erasure
leaves none of those values and keeps every other value as it was."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from workdev_pipeline.catalog import EVENT_TYPES, ITEMS, METADATA_PERSONAL_FIELDS, get_event_type
from workdev_pipeline.governance.personal import (
    ERASED,
    Removed,
    erase_own,
    erase_references,
    key_kind,
)

_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(lambda k: key_kind(k) is None)
#: Spellings of personal keys an application may use (none declared by the catalog).
PERSONAL_KEYS = ("email", "Contact-Email", "phone", "mobile_phone", "address", "homeAddress", "ip_address",
                 "IP_Address", "ip", "x_forwarded_for", "remote_addr", "user_agent", "UA", "device_fingerprint")
_PLAIN = st.one_of(st.integers(-5, 5), st.booleans(), st.none(),
                   st.text(alphabet="abcdefgh ", max_size=6))
_TREES = st.recursive(_PLAIN, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=12)
_SECRETS = st.text(alphabet="0123456789xyz", min_size=6, max_size=10).map(lambda s: f"PII-{s}")


def _put(tree: Any, path: tuple[str, ...], value: Any) -> Any:
    """``tree`` (an object) with ``value`` at ``path`` (through one-item arrays at ITEMS)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == ITEMS:
        return [_put({}, rest, value)] if rest else [value]
    base = tree if isinstance(tree, dict) else {}
    return {**base, head: _put(base.get(head, {} if rest and rest[0] != ITEMS else None), rest, value)}


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


@settings(max_examples=300, deadline=None)
@given(event_type=st.sampled_from([t.name for t in EVENT_TYPES]), base=st.dictionaries(_KEYS, _TREES, max_size=4),
       secrets=st.lists(_SECRETS, min_size=8, max_size=8, unique=True), nested_key=st.sampled_from(PERSONAL_KEYS),
       where=st.lists(_KEYS, min_size=1, max_size=3))
def test_erase_own_removes_every_marked_and_named_value_and_keeps_the_rest(
        event_type: str, base: dict, secrets: list[str], nested_key: str, where: list[str]) -> None:
    data = dict(base)
    fields = get_event_type(event_type).personal_fields
    for i, f in enumerate(fields):
        data = _put(data, f.path, secrets[i % 6])
    data = _put(data, (*where, nested_key), secrets[6])  # a personal key name deep down, any spelling
    metadata = {"platform": "web"}
    for f in METADATA_PERSONAL_FIELDS:
        metadata = _put(metadata, f.path, secrets[7])
    removed = Removed()
    new_data, new_metadata = erase_own(event_type, data, metadata, removed)
    text = json.dumps([new_data, new_metadata])
    assert not any(s in text for s in secrets), text
    assert secrets[6] in {v for vs in removed.values.values() for v in vs}
    assert new_metadata == {"platform": "web"}
    kept = [x for x in _leaves(new_data) if x != ERASED]
    original = _leaves(data)
    for leaf in kept:  # nothing new appears; what stays was there
        assert leaf in original or leaf == {} or leaf == []


@settings(max_examples=200, deadline=None)
@given(base=st.dictionaries(_KEYS, _TREES, max_size=4), note=st.text(alphabet="abc ", max_size=5))
def test_references_become_the_pseudonym_and_the_referenced_users_values_go(base: dict, note: str) -> None:
    user, pseudonym, email = "6f1c2b0e-3d4a-4c5b-8e9f-0a1b2c3d4e5f", "00000000-0000-4000-8000-000000000001", \
        "victim@example.com"
    data = {**base, "conversation_id": "c1", "recipient_user_id": user, "recipient_email": email,
            "note": f"{note} {email}"}
    new_data, _ = erase_references("message.sent", data, {}, user, pseudonym, [email])
    assert new_data["recipient_user_id"] == pseudonym and "recipient_email" not in new_data
    assert email not in json.dumps(new_data) and user not in json.dumps(new_data)
    assert {k: v for k, v in new_data.items() if k in base and k not in ("note",)} == \
        {k: v for k, v in base.items() if k not in ("note", "conversation_id", "recipient_user_id",
                                                     "recipient_email")}
    someone_else = {**data, "recipient_user_id": pseudonym}  # a reference to another user is left alone
    assert erase_references("message.sent", someone_else, {}, user, "x", [])[0]["recipient_email"] == email


def test_the_docs_table_of_personal_fields_is_the_catalogs() -> None:
    """docs/gdpr.md lists every type's marked fields exactly as the catalog marks them."""
    from pathlib import Path

    from workdev_pipeline.catalog import COMMON_PERSONAL_PROPERTIES

    text = (Path(__file__).resolve().parent.parent / "docs" / "gdpr.md").read_text()
    table = text.split("<!-- personal-fields:start")[1].split("<!-- personal-fields:end")[0]
    documented = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            documented[cells[0].strip("`")] = (cells[1], cells[2])
    expected = {}
    for t in EVENT_TYPES:
        own = [f for f in t.personal_fields if f.path[0] not in COMMON_PERSONAL_PROPERTIES]
        fields = ", ".join(f"`{f.dotted}` ({f.kind}" + (f", belongs to `{'.'.join(f.owner)}`)" if f.owner else ")")
                           for f in own)
        refs = ", ".join(f"`{f.dotted}`" for f in t.user_refs)
        if fields or refs:
            expected[t.name] = (fields, refs)
    assert documented == expected


def test_erasure_and_the_readers_share_one_rule_for_personal_keys(conn) -> None:
    """Every key erasure removes by its name is one the query functions hide from readers (0014's
    is_network_key / is_personal_key), and the other way round."""
    keys = [*PERSONAL_KEYS, "platform", "screen", "language", "timezone", "project_id", "title", "skills",
            "uA_version", "zip", "ipsum", "addresses", "shipping_method"]
    readers = dict(conn.execute("SELECT k, is_network_key(k) OR is_personal_key(k) OR "
                                "lower(k) = 'device_fingerprint' FROM unnest(%s::text[]) k", (keys,)).fetchall())
    assert {k: key_kind(k) is not None for k in keys} == readers
