"""Deterministic synthetic WorkDev traffic: demo users and a realistic, streamable event mix.

Pure functions, no database access. Event types, their schemas, entity types and whether they need a
user all come from :mod:`workdev_pipeline.catalog`; this module only adds a weight per type (checked
against the catalog at import) and realistic ``event_data`` builders.

Same arguments (including ``seed`` and ``now``) always give the same output.
"""

from __future__ import annotations

import math
import random
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Any

from workdev_pipeline import catalog

__all__ = [
    "BAD_IPS",
    "COUNTRY_PREFIXES",
    "ROLE_RULES",
    "TYPE_WEIGHTS",
    "USER_AGENTS",
    "DemoUser",
    "UserAgent",
    "country_for_ip",
    "generate_events",
    "generate_users",
]

# -- event mix ------------------------------------------------------------------------------------

#: Relative frequency of each catalog type. Interaction ~60 %, user activity ~19 %, transactions ~14 %,
#: content ~6 %. Checked against the catalog at import; a catalog type missing here still gets
#: ``_DEFAULT_WEIGHT`` and a schema-driven payload, so adding a type never breaks the generator.
TYPE_WEIGHTS: dict[str, float] = {
    # interaction
    "project.viewed": 20.0,
    "profile.viewed": 18.0,
    "search.performed": 14.0,
    "filter.applied": 4.0,
    "message.sent": 3.0,
    "notification.clicked": 1.5,
    # user activity
    "user.login": 6.0,
    "session.started": 5.0,
    "session.ended": 4.0,
    "user.logout": 2.5,
    "user.registered": 0.6,
    "password.changed": 0.3,
    "mfa.enabled": 0.3,
    "mfa.disabled": 0.1,
    # transaction
    "proposal.submitted": 5.0,
    "proposal.rejected": 1.8,
    "project.created": 1.5,
    "project.updated": 1.2,
    "proposal.accepted": 0.8,
    "milestone.created": 0.8,
    "milestone.approved": 0.6,
    "milestone.completed": 0.6,
    "payment.initiated": 0.5,
    "payment.completed": 0.45,
    "project.deleted": 0.3,
    "payment.failed": 0.05,
    # content
    "profile.updated": 2.0,
    "github.synced": 1.5,
    "review.posted": 0.8,
    "portfolio.updated": 0.8,
    "portfolio.created": 0.6,
    "review.updated": 0.15,
}
_DEFAULT_WEIGHT = 0.5

#: The role that performs a type; types not listed are performed by any user.
ROLE_RULES: dict[str, str] = {
    "project.created": "client",
    "project.updated": "client",
    "project.deleted": "client",
    "proposal.accepted": "client",
    "proposal.rejected": "client",
    "milestone.created": "client",
    "milestone.approved": "client",
    "payment.initiated": "client",
    "payment.completed": "client",
    "payment.failed": "client",
    "proposal.submitted": "developer",
    "milestone.completed": "developer",
    "portfolio.created": "developer",
    "portfolio.updated": "developer",
    "github.synced": "developer",
}


def _check_weights(weights: Mapping[str, float], rules: Mapping[str, str]) -> None:
    """Raise ``ValueError`` unless every key names a catalog type and every weight is positive."""
    known = catalog.EVENT_TYPES_BY_NAME
    unknown = sorted((set(weights) | set(rules)) - set(known))
    if unknown:
        raise ValueError(f"demo weights/role rules name types not in the catalog: {unknown}")
    bad = sorted(name for name, w in weights.items() if not w > 0)
    if bad:
        raise ValueError(f"demo weights must be > 0: {bad}")
    bad_roles = sorted(name for name, role in rules.items() if role not in ("client", "developer"))
    if bad_roles:
        raise ValueError(f"demo role rules must be 'client' or 'developer': {bad_roles}")


_check_weights(TYPE_WEIGHTS, ROLE_RULES)

# -- users, countries, IPs, user agents -------------------------------------------------------------

_ROLES = ("client", "developer", "admin")
_ROLE_CUM = (0.44, 0.99, 1.0)
_SIGNUP_SPAN = timedelta(days=3 * 365)

#: Public /16 prefixes (first two octets) from large consumer ISPs' allocations, per ISO country.
COUNTRY_PREFIXES: dict[str, tuple[str, ...]] = {
    "US": ("73.15", "73.162"),      # Comcast 73.0.0.0/8
    "IN": ("117.200", "117.242"),   # BSNL 117.192.0.0/10
    "GB": ("86.150", "86.181"),     # BT 86.128.0.0/10
    "DE": ("79.200", "79.221"),     # Deutsche Telekom 79.192.0.0/10
    "BR": ("177.92", "177.139"),    # NIC.br-delegated 177.0.0.0/8
    "UA": ("92.112", "92.119"),     # Ukrtelecom 92.112.0.0/12
    "PL": ("83.24", "83.30"),       # Orange Polska 83.0.0.0/11
    "FR": ("90.24", "90.91"),       # Orange France 90.0.0.0/9
    "CA": ("99.230", "99.245"),     # Rogers 99.224.0.0/11
    "NG": ("105.112", "105.120"),   # Airtel Nigeria 105.112.0.0/12
    "ES": ("88.12", "88.27"),       # Telefonica de Espana 88.0.0.0/11
    "NL": ("77.160", "77.170"),     # KPN 77.160.0.0/12
    "AU": ("101.160", "101.186"),   # Telstra 101.160.0.0/11
    "JP": ("126.36", "126.212"),    # SoftBank 126.0.0.0/8
}
_COUNTRY_WEIGHTS: dict[str, float] = {
    "US": 28, "IN": 12, "GB": 8, "DE": 7, "BR": 6, "UA": 6, "PL": 5, "FR": 5, "CA": 5, "NG": 4,
    "ES": 4, "NL": 3, "AU": 3, "JP": 3,
}
_COUNTRIES = tuple(COUNTRY_PREFIXES)
_COUNTRY_CUM = tuple(accumulate(_COUNTRY_WEIGHTS[c] for c in _COUNTRIES))
_PREFIX_COUNTRY = {p: c for c, prefixes in COUNTRY_PREFIXES.items() for p in prefixes}
_COUNTRY_CURRENCY = {"GB": "GBP", "DE": "EUR", "FR": "EUR", "ES": "EUR", "NL": "EUR"}

#: Private, loopback and malformed addresses put on ~1 % of events to exercise geo enrichment.
BAD_IPS: tuple[str, ...] = ("10.0.0.5", "192.168.1.20", "127.0.0.1", "not-an-ip", "172.16.8.33", "::1")
_BAD_IP_SHARE = 0.01
_GARBAGE_UA_SHARE = 0.005
_TRAVEL_SHARE = 0.04  # sessions from a foreign IP (travel, VPN)


def country_for_ip(ip: str) -> str | None:
    """The country whose demo prefix ``ip`` falls in, or ``None`` (private, invalid or foreign)."""
    head, _, rest = ip.partition(".")
    second, _, _ = rest.partition(".")
    return _PREFIX_COUNTRY.get(f"{head}.{second}")


@dataclass(frozen=True)
class UserAgent:
    """A real user-agent string and the platform/source it implies."""

    string: str
    platform: str  # web | ios | android
    source: str  # web | mobile | api
    kind: str  # desktop | mobile | app | bot | api


_CH = "AppleWebKit/537.36 (KHTML, like Gecko)"
_SF = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
USER_AGENTS: tuple[UserAgent, ...] = (
    UserAgent(f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CH} Chrome/124.0.0.0 Safari/537.36",
              "web", "web", "desktop"),
    UserAgent(f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CH} Chrome/123.0.0.0 Safari/537.36",
              "web", "web", "desktop"),
    UserAgent(f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_CH} Chrome/124.0.0.0 Safari/537.36",
              "web", "web", "desktop"),
    UserAgent(f"Mozilla/5.0 (X11; Linux x86_64) {_CH} Chrome/124.0.0.0 Safari/537.36",
              "web", "web", "desktop"),
    UserAgent("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
              "web", "web", "desktop"),
    UserAgent("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
              "web", "web", "desktop"),
    UserAgent("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
              "web", "web", "desktop"),
    UserAgent(f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_SF} Version/17.4.1 Safari/605.1.15",
              "web", "web", "desktop"),
    UserAgent(f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CH} Chrome/124.0.0.0 Safari/537.36 "
              "Edg/124.0.2478.80", "web", "web", "desktop"),
    UserAgent(f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_CH} Chrome/123.0.0.0 Safari/537.36 "
              "Edg/123.0.2420.97", "web", "web", "desktop"),
    UserAgent(f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CH} Chrome/122.0.0.0 Safari/537.36 "
              "OPR/108.0.0.0", "web", "web", "desktop"),
    UserAgent(f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) {_SF} Version/17.4.1 "
              "Mobile/15E148 Safari/604.1", "ios", "web", "mobile"),
    UserAgent(f"Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) {_SF} Version/16.6 "
              "Mobile/15E148 Safari/604.1", "ios", "web", "mobile"),
    UserAgent(f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) {_SF} CriOS/124.0.6367.88 "
              "Mobile/15E148 Safari/604.1", "ios", "web", "mobile"),
    UserAgent(f"Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) {_SF} Version/17.4 Mobile/15E148 Safari/604.1",
              "ios", "web", "mobile"),
    UserAgent(f"Mozilla/5.0 (Linux; Android 14; Pixel 8) {_CH} Chrome/124.0.6367.82 Mobile Safari/537.36",
              "android", "web", "mobile"),
    UserAgent(f"Mozilla/5.0 (Linux; Android 10; K) {_CH} Chrome/124.0.0.0 Mobile Safari/537.36",
              "android", "web", "mobile"),
    UserAgent(f"Mozilla/5.0 (Linux; Android 13; SM-S911B) {_CH} SamsungBrowser/24.0 Chrome/117.0.0.0 "
              "Mobile Safari/537.36", "android", "web", "mobile"),
    UserAgent("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
              "android", "web", "mobile"),
    UserAgent("WorkDev/3.14.0 CFNetwork/1494.0.7 Darwin/23.4.0", "ios", "mobile", "app"),
    UserAgent("okhttp/4.12.0", "android", "mobile", "app"),
    UserAgent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
              "web", "web", "bot"),
    UserAgent("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
              "web", "web", "bot"),
    UserAgent("curl/8.5.0", "web", "api", "api"),
    UserAgent("python-requests/2.31.0", "web", "api", "api"),
    UserAgent("PostmanRuntime/7.37.3", "web", "api", "api"),
)
_UA_BY_KIND: dict[str, tuple[UserAgent, ...]] = {
    k: tuple(u for u in USER_AGENTS if u.kind == k) for k in ("desktop", "mobile", "app", "bot", "api")
}
_HUMAN_UAS = _UA_BY_KIND["desktop"] + _UA_BY_KIND["mobile"] + _UA_BY_KIND["app"]
_GARBAGE_UAS = ("", "-", "null", "undefined", "Mozilla/5.0 (", "Mozilla/4.0 (compatible;", "???")
_JUNK_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 /;()._-%$#@!"


@dataclass(frozen=True)
class DemoUser:
    """A synthetic WorkDev account."""

    user_id: uuid.UUID
    role: str  # "client" | "developer" | "admin"
    signed_up_at: datetime  # tz-aware UTC, before ``now``
    country: str  # ISO 3166-1 alpha-2, consistent with the user's usual IP


def _resolve_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def _uuid4(getrandbits: Callable[[int], int]) -> uuid.UUID:
    return uuid.UUID(int=getrandbits(128), version=4)


def generate_users(count: int, *, seed: int = 42, now: datetime | None = None) -> list[DemoUser]:
    """``count`` users: ~55 % developers, ~44 % clients, ~1 % admins, sign-ups over 3 years (growing)."""
    if count < 0:
        raise ValueError("count must be >= 0")
    now = _resolve_now(now)
    rng = random.Random(seed)
    rnd, bits = rng.random, rng.getrandbits
    span = _SIGNUP_SPAN.total_seconds()
    users: list[DemoUser] = []
    for _ in range(count):
        user_id = _uuid4(bits)
        role = _ROLES[bisect_right(_ROLE_CUM, rnd())]
        # density grows toward ``now`` (a growing marketplace); always at least a second in the past
        ago = max(1.0, span * (1.0 - math.sqrt(rnd())))
        signed_up_at = (now - timedelta(seconds=ago)).replace(microsecond=0)
        country = _COUNTRIES[bisect_right(_COUNTRY_CUM, rnd() * _COUNTRY_CUM[-1])]
        users.append(DemoUser(user_id, role, signed_up_at, country))
    return users


# -- event generation --------------------------------------------------------------------------------

_CURRENCIES = ("USD", "USD", "USD", "EUR", "GBP")
_SEARCH_QUERIES = (
    "react developer", "python developer", "django rest api", "node.js backend", "flutter app",
    "ios developer swift", "android kotlin", "wordpress fix", "shopify expert", "data engineer",
    "machine learning engineer", "devops kubernetes", "aws lambda", "next.js frontend", "ui ux designer",
    "golang microservices", "rust developer", "php laravel", "web scraping", "openai chatbot",
    "solidity smart contract", "postgres performance", "full stack developer", "vue.js", "react native",
    "qa automation", "terraform aws", "landing page", "chrome extension", "unity game developer",
)
_SKILLS = (
    "React", "TypeScript", "Python", "Django", "Node.js", "Go", "Rust", "Kotlin", "Swift", "Flutter",
    "PostgreSQL", "AWS", "Docker", "Kubernetes", "GraphQL", "Next.js", "Vue.js", "PHP", "Laravel",
    "WordPress", "Shopify", "TensorFlow", "pandas", "Terraform", "Figma",
)
_VERBS = ("Build", "Develop", "Fix", "Migrate", "Redesign", "Optimize", "Integrate", "Automate", "Audit",
          "Maintain")
_THINGS = (
    "a React dashboard", "a Django REST API", "an iOS app", "an Android app", "a Shopify store",
    "a WordPress site", "a data pipeline", "a Kubernetes cluster", "a Chrome extension", "Stripe payments",
    "a CI/CD pipeline", "a recommendation model", "a landing page", "a Flutter app", "a GraphQL gateway",
    "our Postgres database", "an admin panel", "a Telegram bot", "a web scraper", "a Next.js frontend",
)
_FOR = ("for a fintech startup", "for our SaaS product", "for an e-commerce brand", "for a dental clinic",
        "for a logistics company", "for a real-estate agency", "for an edtech platform", "(long-term)",
        "(urgent)", "")
_PORTFOLIO = ("E-commerce platform", "Telemedicine app", "Crypto portfolio tracker", "Restaurant booking app",
              "Analytics dashboard", "Fitness tracker", "Internal CRM", "Marketplace MVP", "Chat widget",
              "Inventory system")
_FILTERS = ("budget_min", "budget_max", "skills", "project_type", "experience_level", "country",
            "hourly_rate", "availability")
_PROJECT_FIELDS = ("title", "description", "budget", "skills", "deadline", "project_type", "attachments")
_PROFILE_FIELDS = ("headline", "bio", "hourly_rate", "skills", "avatar", "location", "availability",
                   "languages")
_PORTFOLIO_FIELDS = ("title", "description", "images", "skills", "url")
_LOGIN_METHODS = ("password", "password", "password", "password", "password", "google", "google", "google",
                  "github", "github", "magic_link", "sso")
_DEV_LOGIN_METHODS = ("password", "password", "password", "google", "google", "github", "github", "github",
                      "github", "magic_link", "sso")
_MFA_METHODS = ("totp", "totp", "totp", "totp", "totp", "totp", "totp", "sms", "sms", "webauthn")
_RATINGS = (5.0,) * 10 + (4.5,) * 6 + (4.0,) * 4 + (3.5,) * 2 + (3.0, 2.5, 2.0, 1.5, 1.0)
_FAILURE_CODES = ("card_declined", "card_declined", "insufficient_funds", "expired_card", "processing_error",
                  "fraud_suspected", "3ds_failed")
_NOTIFICATIONS = ("new_proposal", "message_received", "milestone_approved", "payment_received",
                  "project_invite", "review_received", "proposal_accepted")
_SIGNUP_SOURCES = ("organic", "organic", "google_ads", "referral", "github", "linkedin", "newsletter")
_DELETE_REASONS = ("hired_elsewhere", "no_longer_needed", "budget_changed", "duplicate")
_REJECT_REASONS = ("budget_too_high", "timeline", "experience_mismatch", "chose_another_developer")
_EXPERIENCE = ("entry", "intermediate", "expert")

_ANON, _ALL, _CLIENT, _DEVELOPER = 0, 1, 2, 3  # session pools
_ACT_PLAIN, _ACT_START, _ACT_END, _ACT_REGISTER = 0, 1, 2, 3
_START_TYPES = frozenset({"session.started", "user.login"})
_END_TYPES = frozenset({"session.ended", "user.logout"})
_RING_SIZE = 512


class _Profile:
    """A user's usual IPs and user agents (derived from the user id, so stable across calls)."""

    __slots__ = ("alt_ip", "home_ip", "primary", "secondary")

    def __init__(self, user: DemoUser, seed: int) -> None:
        r = random.Random(user.user_id.int ^ (seed * 0x9E3779B97F4A7C15))
        prefixes = COUNTRY_PREFIXES.get(user.country) or COUNTRY_PREFIXES["US"]
        self.home_ip = _random_ip(r, r.choice(prefixes))
        self.alt_ip = _random_ip(r, r.choice(prefixes))  # e.g. the phone's carrier IP
        x = r.random()
        kind = "desktop" if x < 0.6 else "mobile" if x < 0.85 else "app"
        self.primary = r.choice(_UA_BY_KIND[kind])
        x = r.random()
        if user.role == "developer" and x < 0.08:
            self.secondary = r.choice(_UA_BY_KIND["api"])
        elif x < 0.55:
            self.secondary = r.choice(_UA_BY_KIND["mobile" if kind == "desktop" else "desktop"])
        else:
            self.secondary = self.primary


def _random_ip(r: random.Random, prefix: str) -> str:
    return f"{prefix}.{int(r.random() * 256)}.{1 + int(r.random() * 254)}"


class _Session:
    __slots__ = ("ip", "platform", "remaining", "role", "session_id", "source", "started", "ua", "uid_str",
                 "user_id", "user_index")

    def __init__(self) -> None:
        self.remaining = 0  # an expired placeholder: replaced on first use
        self.started: datetime | None = None
        self.user_id: uuid.UUID | None = None
        self.uid_str: str | None = None
        self.user_index = -1
        self.role = ""


class _Ring:
    """A fixed-size pool of recent entities (bounded memory)."""

    __slots__ = ("items", "pos")

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.pos = 0

    def add(self, item: Any) -> None:
        items = self.items
        if len(items) < _RING_SIZE:
            items.append(item)
        else:
            items[self.pos] = item
            self.pos = (self.pos + 1) % _RING_SIZE


class _Generator:
    """State of one :func:`generate_events` call."""

    def __init__(self, users: Sequence[DemoUser], *, seed: int, now: datetime, days: float,
                 count: int, anonymous_share: float) -> None:
        self.users = users
        self.seed = seed
        self.now = now
        self.count = count
        self.anonymous_share = anonymous_share
        rng = random.Random(f"workdev-demo-events:{seed}")  # independent of generate_users' stream
        self.rng = rng
        self.rnd = rng.random
        self.bits = rng.getrandbits
        self.uid_strs = [str(u.user_id) for u in users]
        self.by_role: dict[str, list[int]] = {r: [] for r in _ROLES}
        for i, u in enumerate(users):
            self.by_role.setdefault(u.role, []).append(i)
        self.all_idx = list(range(len(users)))
        self.start = now - timedelta(days=days)
        self.recent = [i for i in self.all_idx
                       if users[i].role != "admin" and users[i].signed_up_at >= self.start]
        self.non_admin = [i for i in self.all_idx if users[i].role != "admin"] or self.all_idx
        self.profiles: dict[int, _Profile] = {}
        self._init_time(days)
        self._init_types()
        self._init_rings()

    # -- time ---------------------------------------------------------------------------------------
    def _init_time(self, days: float) -> None:
        """Hourly buckets weighted by a diurnal (peak ~15:00 UTC) and weekly (quieter weekend) curve."""
        span = days * 86400.0
        n = max(1, math.ceil(span / 3600.0))
        edges = [min(k * 3600.0, span) for k in range(n)] + [span]
        cum, inv = [0.0], []
        for k in range(n):
            t = self.start + timedelta(seconds=(edges[k] + edges[k + 1]) / 2)
            hour = t.hour + t.minute / 60
            factor = 0.45 + 0.55 * (0.5 - 0.5 * math.cos(2 * math.pi * (hour - 3) / 24))
            if t.weekday() >= 5:
                factor *= 0.7
            length = edges[k + 1] - edges[k]
            cum.append(cum[-1] + factor * length)
            inv.append(1.0 / factor)
        self.e_edges, self.e_cum, self.e_inv, self.e_n = edges, cum, inv, n
        self.e_step = cum[-1] / self.count if self.count else 0.0

    # -- types --------------------------------------------------------------------------------------
    def _init_types(self) -> None:
        types = [t for t in catalog.EVENT_TYPES if t.active]
        self.t_names = [t.name for t in types]
        self.t_entity = [t.entity_type for t in types]
        self.t_anon = [not t.requires_user for t in types]
        self.t_cum = list(accumulate(TYPE_WEIGHTS.get(t.name, _DEFAULT_WEIGHT) for t in types))
        self.t_total = self.t_cum[-1]
        pools = {_ANON: [], _ALL: [], _CLIENT: [], _DEVELOPER: []}
        n_users = len(self.users)
        size = 48
        pools[_ANON] = [_Session() for _ in range(12)]
        pools[_ALL] = [_Session() for _ in range(min(size, max(1, n_users)))]
        for kind, role in ((_CLIENT, "client"), (_DEVELOPER, "developer")):
            n_role = len(self.by_role[role])
            pools[kind] = [_Session() for _ in range(min(n_role, max(1, size * n_role // max(1, n_users))))]
        self.pools = pools
        self.t_kind, self.t_action, self.t_builder = [], [], []
        for t in types:
            role = ROLE_RULES.get(t.name)
            kind = {"client": _CLIENT, "developer": _DEVELOPER}.get(role or "", _ALL)
            if not pools[kind]:
                kind = _ALL  # no users of that role: any user does it
            self.t_kind.append(kind)
            action = (_ACT_REGISTER if t.name == "user.registered" else _ACT_START if t.name in _START_TYPES
                      else _ACT_END if t.name in _END_TYPES else _ACT_PLAIN)
            self.t_action.append(action)
            builder = getattr(self, "_b_" + t.name.replace(".", "_"), None)
            self.t_builder.append(builder or self._generic_builder(t))

    def _init_rings(self) -> None:
        rnd = self.rnd
        self.projects = _Ring([])
        self.proposals = _Ring([])
        self.milestones = _Ring([])
        self.reviews = _Ring([])
        self.portfolios = _Ring([])
        self.conversations = _Ring([])
        for _ in range(256):  # entities that existed before the window
            pid = self._uid()
            budget, currency = self._budget(), _CURRENCIES[int(rnd() * 5)]
            self.projects.add((pid, budget, currency))
            self.proposals.add((self._uid(), pid, self._bid(budget)))
            self.milestones.add((self._uid(), pid, round(budget * (0.15 + 0.35 * rnd()), 2), currency))
            self.reviews.add(self._uid())
            self.portfolios.add(self._uid())
            self.conversations.add(self._uid())
        self.developer_ids = [self.uid_strs[i] for i in self.by_role["developer"]] or self.uid_strs
        self.client_ids = [self.uid_strs[i] for i in self.by_role["client"]] or self.uid_strs

    # -- helpers ------------------------------------------------------------------------------------
    def _uid(self) -> str:
        h = "%032x" % ((self.bits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48))
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rnd() * len(seq))]

    def _budget(self) -> float:
        return float(max(100, round(self.rng.lognormvariate(7.6, 0.9) / 50) * 50))

    def _bid(self, budget: float) -> float:
        return float(max(20, round(budget * (0.6 + 0.55 * self.rnd()) / 5) * 5))

    def _skills(self) -> list[str]:
        return self.rng.sample(_SKILLS, 1 + int(self.rnd() * 5))

    def _fields(self, fields: Sequence[str]) -> list[str]:
        return self.rng.sample(fields, 1 + int(self.rnd() * 3))

    def _currency(self, s: _Session) -> str:
        if s.user_id is not None and self.rnd() < 0.7:
            country = self.users[s.user_index].country
            return _COUNTRY_CURRENCY.get(country, "USD")
        return _CURRENCIES[int(self.rnd() * 5)]

    def _profile(self, idx: int) -> _Profile:
        p = self.profiles.get(idx)
        if p is None:
            p = self.profiles[idx] = _Profile(self.users[idx], self.seed)
        return p

    def _new_session(self, kind: int, idx: int | None = None) -> _Session:
        s = _Session()
        rnd = self.rnd
        s.session_id = _uuid4(self.bits)
        s.remaining = 5 + int(rnd() * 36)
        if kind == _ANON and idx is None:
            x = rnd()
            ua = self._pick(_UA_BY_KIND["bot"] + _UA_BY_KIND["api"]) if x < 0.15 else self._pick(_HUMAN_UAS)
            country = _COUNTRIES[bisect_right(_COUNTRY_CUM, rnd() * _COUNTRY_CUM[-1])]
            s.ip = _random_ip(self.rng, self._pick(COUNTRY_PREFIXES[country]))
            s.ua, s.platform, s.source = ua.string, ua.platform, ua.source
            s.user_index = -1
            return s
        if idx is None:
            members = self.all_idx if kind == _ALL else self.by_role["client" if kind == _CLIENT else "developer"]
            idx = members[int(rnd() * len(members))]
        user = self.users[idx]
        s.user_id, s.uid_str, s.role = user.user_id, self.uid_strs[idx], user.role
        s.user_index = idx
        prof = self._profile(idx)
        x = rnd()
        if x < 0.7:
            ua, ip = prof.primary, prof.home_ip
        else:
            ua = prof.secondary
            ip = prof.alt_ip if ua.kind in ("mobile", "app") else prof.home_ip
        if rnd() < _TRAVEL_SHARE:
            ip = _random_ip(self.rng, self._pick(COUNTRY_PREFIXES[self._pick(_COUNTRIES)]))
        s.ip, s.ua, s.platform, s.source = ip, ua.string, ua.platform, ua.source
        return s

    def _garbage_ua(self) -> str:
        rnd = self.rnd
        if rnd() < 0.6:
            return self._pick(_GARBAGE_UAS)
        return "".join(self._pick(_JUNK_CHARS) for _ in range(1 + int(rnd() * 60)))

    # -- the stream ---------------------------------------------------------------------------------
    def run(self) -> Iterator[dict[str, Any]]:
        rnd, bits = self.rnd, self.bits
        t_cum, t_total, t_names, t_entity = self.t_cum, self.t_total, self.t_names, self.t_entity
        t_anon, t_kind, t_action, t_builder = self.t_anon, self.t_kind, self.t_action, self.t_builder
        pools, anon_pool, anon_share = self.pools, self.pools[_ANON], self.anonymous_share
        e_cum, e_edges, e_inv, e_n, e_step = self.e_cum, self.e_edges, self.e_inv, self.e_n, self.e_step
        start, now = self.start, self.now
        all_pool = pools[_ALL]
        new_session = self._new_session
        bad_share, bad_ua_cut = _BAD_IP_SHARE, _BAD_IP_SHARE + _GARBAGE_UA_SHARE
        n_bad = len(BAD_IPS)
        UUID = uuid.UUID
        for i in range(self.count):
            k = bisect_right(t_cum, rnd() * t_total)
            action = t_action[k]
            if action == _ACT_REGISTER:
                j = int(rnd() * len(all_pool))
                cands = self.recent or self.non_admin
                s = all_pool[j] = new_session(_ALL, cands[int(rnd() * len(cands))])
            else:
                if t_anon[k] and anon_share and rnd() < anon_share:
                    pool, kind = anon_pool, _ANON
                else:
                    kind = t_kind[k]
                    pool = pools[kind]
                j = int(rnd() * len(pool))
                s = pool[j]
                if s.remaining <= 0 or (action == _ACT_START and s.started is not None):
                    s = pool[j] = new_session(kind)
            # timestamp: invert the seasonal CDF at a jittered, increasing position
            target = (i + rnd()) * e_step
            b = bisect_right(e_cum, target) - 1
            if b >= e_n:
                b = e_n - 1
            ts = start + timedelta(seconds=e_edges[b] + (target - e_cum[b]) * e_inv[b])
            if ts > now:
                ts = now
            if s.started is None:
                s.started = ts
            s.remaining = 0 if action == _ACT_END else s.remaining - 1
            data, entity_id = t_builder[k](s, ts)
            ip, ua = s.ip, s.ua
            x = rnd()
            if x < bad_ua_cut:
                if x < bad_share:
                    ip = BAD_IPS[int(x / bad_share * n_bad)]
                else:
                    ua = self._garbage_ua()
            yield {
                "event_id": UUID(int=bits(128), version=4),
                "event_type": t_names[k],
                "user_id": s.user_id,
                "entity_type": t_entity[k],
                "entity_id": entity_id,
                "event_data": data,
                "metadata": {"ip_address": ip, "user_agent": ua, "platform": s.platform},
                "source": s.source,
                "session_id": s.session_id,
                "timestamp": ts,
            }

    # -- event_data builders: (session, timestamp) -> (event_data, entity_id) ----------------------------
    def _b_project_created(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        rnd = self.rnd
        pid = self._uid()
        hourly = rnd() < 0.3
        budget = self._budget()
        currency = self._currency(s)
        self.projects.add((pid, budget, currency))
        title = f"{self._pick(_VERBS)} {self._pick(_THINGS)} {self._pick(_FOR)}".rstrip()
        data = {"title": title, "budget": budget, "project_type": "hourly" if hourly else "fixed",
                "is_featured": rnd() < 0.1, "skills": self._skills(), "currency": currency,
                "experience_level": self._pick(_EXPERIENCE)}
        if hourly:
            data["hourly_rate_max"] = float(15 + 5 * int(rnd() * 28))
        return data, pid

    def _b_project_updated(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return {"changed_fields": self._fields(_PROJECT_FIELDS)}, self._pick(self.projects.items)[0]

    def _b_project_deleted(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        data = {"reason": self._pick(_DELETE_REASONS)} if self.rnd() < 0.6 else {}
        return data, self._pick(self.projects.items)[0]

    def _b_project_viewed(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        pid = self._pick(self.projects.items)[0]
        return {"project_id": pid}, pid

    def _b_proposal_submitted(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        pid, budget, _ = self._pick(self.projects.items)
        prop, bid = self._uid(), self._bid(budget)
        self.proposals.add((prop, pid, bid))
        return {"project_id": pid, "bid_amount": bid, "estimated_days": 3 + int(self.rnd() * 60)}, prop

    def _b_proposal_accepted(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        prop, pid, bid = self._pick(self.proposals.items)
        return {"project_id": pid, "bid_amount": bid}, prop

    def _b_proposal_rejected(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        prop, pid, _ = self._pick(self.proposals.items)
        data = {"project_id": pid}
        if self.rnd() < 0.5:
            data["reason"] = self._pick(_REJECT_REASONS)
        return data, prop

    def _b_milestone_created(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        pid, budget, currency = self._pick(self.projects.items)
        mid, amount = self._uid(), round(budget * (0.15 + 0.35 * self.rnd()), 2)
        self.milestones.add((mid, pid, amount, currency))
        due = ts.date() + timedelta(days=7 + int(self.rnd() * 40))
        data = {"project_id": pid, "amount": amount, "due_date": date.isoformat(due), "currency": currency}
        return data, mid

    def _b_milestone_approved(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        mid, pid, amount, currency = self._pick(self.milestones.items)
        return {"project_id": pid, "amount": amount, "currency": currency}, mid

    _b_milestone_completed = _b_milestone_approved

    def _payment(self) -> tuple[dict[str, Any], str | None]:
        mid, _, amount, currency = self._pick(self.milestones.items)
        return {"amount": amount, "currency": currency, "milestone_id": mid}, self._uid()

    def _b_payment_initiated(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return self._payment()

    _b_payment_completed = _b_payment_initiated

    def _b_payment_failed(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        data, pay = self._payment()
        data["failure_code"] = self._pick(_FAILURE_CODES)
        return data, pay

    def _b_profile_viewed(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        uid = self._pick(self.developer_ids)
        return {"profile_user_id": uid}, uid

    def _b_search_performed(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        rnd = self.rnd
        x = rnd()
        filters: dict[str, Any] = {}
        if x < 0.25:
            filters["project_type"] = "hourly" if x < 0.1 else "fixed"
        elif x < 0.4:
            filters["budget_min"] = 250 * (1 + int(rnd() * 8))
        elif x < 0.5:
            filters["skills"] = [self._pick(_SKILLS)]
        results = 0 if rnd() < 0.04 else int(math.exp(3.5 + 1.2 * (rnd() + rnd() + rnd() - 1.5)))
        ms = round(12.0 + math.exp(3.3 + 0.8 * (rnd() + rnd() - 1.0)), 1)
        return {"query": self._pick(_SEARCH_QUERIES), "filters": filters, "results_count": results,
                "search_time_ms": ms}, None

    def _b_filter_applied(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        name = self._pick(_FILTERS)
        rnd = self.rnd
        value: Any
        if name in ("budget_min", "budget_max"):
            value = 250 * (1 + int(rnd() * 20))
        elif name == "hourly_rate":
            value = [15 + 5 * int(rnd() * 5), 50 + 10 * int(rnd() * 10)]
        elif name == "skills":
            value = self._skills()
        elif name == "project_type":
            value = "hourly" if rnd() < 0.4 else "fixed"
        elif name == "experience_level":
            value = self._pick(_EXPERIENCE)
        elif name == "country":
            value = self._pick(_COUNTRIES)
        else:
            value = rnd() < 0.7
        return {"filter_name": name, "filter_value": value}, None

    def _b_message_sent(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        rnd = self.rnd
        if rnd() < 0.1:
            conv = self._uid()
            self.conversations.add(conv)
        else:
            conv = self._pick(self.conversations.items)
        other = self.developer_ids if s.role == "client" else self.client_ids
        return {"conversation_id": conv, "recipient_user_id": self._pick(other),
                "length": 1 + int(-180.0 * math.log(1.0 - rnd()))}, self._uid()

    def _b_notification_clicked(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return {"notification_type": self._pick(_NOTIFICATIONS)}, self._uid()

    def _b_user_login(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        methods = _DEV_LOGIN_METHODS if s.role == "developer" else _LOGIN_METHODS
        return {"method": self._pick(methods), "mfa_used": self.rnd() < 0.22}, None

    def _b_user_logout(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return {}, None

    _b_session_started = _b_user_logout
    _b_password_changed = _b_user_logout
    _b_mfa_disabled = _b_user_logout

    def _b_user_registered(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        role = s.role if s.role in ("client", "developer") else "client"
        return {"role": role, "signup_source": self._pick(_SIGNUP_SOURCES)}, None

    def _b_session_ended(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        duration = (ts - (s.started or ts)).total_seconds()
        if duration < 1.0:  # the session's first event in this window: it began earlier
            duration = 30.0 - 600.0 * math.log(1.0 - self.rnd())
        return {"duration_seconds": round(duration, 1)}, None

    def _b_mfa_enabled(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return {"method": self._pick(_MFA_METHODS)}, None

    def _b_review_posted(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        rid = self._uid()
        self.reviews.add(rid)
        if s.role == "developer":
            reviewee, kind = self._pick(self.client_ids), "client"
        else:
            reviewee, kind = self._pick(self.developer_ids), "developer"
        return {"reviewee_user_id": reviewee, "reviewee_type": kind, "rating_overall": self._pick(_RATINGS),
                "comment_length": int(-120.0 * math.log(1.0 - self.rnd()))}, rid

    def _b_review_updated(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return {"rating_overall": self._pick(_RATINGS)}, self._pick(self.reviews.items)

    def _b_portfolio_created(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        pid = self._uid()
        self.portfolios.add(pid)
        title = f"{self._pick(_PORTFOLIO)} ({self._pick(_SKILLS)})"
        return {"title": title, "skills": self._skills()}, pid

    def _b_portfolio_updated(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return {"changed_fields": self._fields(_PORTFOLIO_FIELDS)}, self._pick(self.portfolios.items)

    def _b_profile_updated(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return {"changed_fields": self._fields(_PROFILE_FIELDS)}, s.uid_str

    def _b_github_synced(self, s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
        return {"repositories": int(math.exp(3.0 * self.rnd()))}, s.uid_str

    def _generic_builder(self, t: catalog.EventType) -> Callable[[_Session, datetime],
                                                                  tuple[dict[str, Any], str | None]]:
        """A schema-driven payload for a catalog type this module has no builder for."""

        def value(schema: Mapping[str, Any]) -> Any:
            if "enum" in schema:
                return self._pick(schema["enum"])
            kind = schema.get("type")
            if schema.get("format") == "uuid":
                return self._uid()
            if kind == "number":
                return round(10 + 990 * self.rnd(), 2)
            if kind == "integer":
                return int(self.rnd() * 100)
            if kind == "boolean":
                return self.rnd() < 0.5
            if kind == "array":
                return []
            if kind == "object":
                return {}
            return "demo"

        def build(s: _Session, ts: datetime) -> tuple[dict[str, Any], str | None]:
            data = {key: value(t.properties.get(key, {})) for key in t.required}
            return data, (self._uid() if t.entity_type else None)

        return build


def generate_events(users: Sequence[DemoUser], count: int, *, days: float = 7.0, seed: int = 42,
                    now: datetime | None = None, anonymous_share: float = 0.05) -> Iterator[dict[str, Any]]:
    """Stream ``count`` events by ``users`` over ``[now - days, now]`` (roughly in time order).

    Memory is bounded (sessions and recent entities live in fixed-size pools), so any ``count`` streams.
    ``anonymous_share`` is the share of events of types that allow it (``requires_user`` False) sent
    without a user.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if not days > 0:
        raise ValueError("days must be > 0")
    if not 0.0 <= anonymous_share <= 1.0:
        raise ValueError("anonymous_share must be within [0, 1]")
    if count and not users:
        raise ValueError("generate_events needs at least one user")
    now = _resolve_now(now)
    gen = _Generator(users, seed=seed, now=now, days=days, count=count, anonymous_share=anonymous_share)
    return gen.run()
