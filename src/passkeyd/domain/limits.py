"""Rate limits and size limits, shared by every process through the store.

Fixed windows: each rule allows `limit` hits per `window` seconds for one key (an identity,
an entity, an account). A refusal says when to retry (429, `Retry-After`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from passkeyd.digits import ascii_int

from .clock import Clock
from .errors import TooManyRequests
from .models import RateHit
from .store import Store

# The defaults of the size limits (PASSKEYD_MAX_PASSKEYS_PER_ENTITY and
# PASSKEYD_MAX_PENDING_CHALLENGES_PER_ENTITY), and of the rate limits below, bound what a
# flood can make one user cost, but are set well above what any legitimate client makes:
# an app's own integration tests, which sign one test user in and out many times a minute
# and leave a pending challenge behind each refusal they check, must not meet them (with
# 20 and 30/min, a suite checking 21 refusals for one user got a 429 on the 21st). A flood
# from one identity still stops within 100 requests a minute.
MAX_FACTORS_PER_ENTITY = 100  # verified, or awaiting registration
MAX_PENDING_CHALLENGES_PER_ENTITY = 100


@dataclass(frozen=True)
class Rule:
    limit: int
    window: int


DEFAULT_RULES = {
    "challenge": Rule(100, 60),  # challenges created per identity
    "usernameless": Rule(600, 60),  # usernameless challenges created per service
    "approve": Rule(100, 60),  # failed approvals per identity (a valid one always passes)
    # passkey factors created per entity (Twilio 60326). Low enough to stop a loop, high
    # enough that no client filling an entity up to its 100 passkeys (the default bound)
    # meets it; raise it too when PASSKEYD_MAX_PASSKEYS_PER_ENTITY goes past 100.
    "factor": Rule(100, 60),
    "failed_auth": Rule(100, 60),  # failed authentications with foreign passkeys, per account
}


class RateLimitSpecError(ValueError):
    pass


def parse_rules(spec: str) -> dict[str, Rule]:
    """`off`, or `name=limit/window,...` over the defaults (e.g. `challenge=10/60`)."""
    if spec.strip().lower() in ("off", "false", "0", "none"):
        return {}
    rules = dict(DEFAULT_RULES)
    named: set[str] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        limit_text, _, window_text = value.partition("/")
        limit, window = ascii_int(limit_text), ascii_int(window_text)
        if name not in DEFAULT_RULES or limit is None or window is None:
            raise RateLimitSpecError(
                f"expected off or name=limit/seconds with name in {', '.join(DEFAULT_RULES)},"
                f" got {part!r}"
            )
        if limit < 1 or window < 1:
            raise RateLimitSpecError(f"limit and window must be positive in {part!r}")
        if name in named:  # (one of the two would be silently in force)
            raise RateLimitSpecError(f"{name} is given twice")
        named.add(name)
        rules[name] = Rule(limit, window)
    return rules


@dataclass
class RateLimiter:
    store: Store
    clock: Clock
    rules: dict[str, Rule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    max_factors: int = MAX_FACTORS_PER_ENTITY  # per entity
    max_pending_challenges: int = MAX_PENDING_CHALLENGES_PER_ENTITY  # per entity

    def pending_hit(self, rule_name: str, key: str) -> RateHit | None:
        """A hit to count inside another write's transaction (None when the rule is off)."""
        rule = self.rules.get(rule_name)
        if rule is None:
            return None
        now = self.clock()
        return RateHit(f"{rule_name}:{key}", now - now % rule.window, rule.limit, rule.window)

    def longest_window(self) -> int:
        """The longest window of any rule: a window that began earlier counts for none."""
        return max((rule.window for rule in self.rules.values()), default=0)

    def retry_after(self, rule_name: str) -> int:
        rule = self.rules.get(rule_name)
        if rule is None:
            return 1
        now = self.clock()
        return rule.window - now % rule.window

    def check(self, rule_name: str, key: str) -> None:
        """Refuse when the limit is already used up, without counting a hit."""
        rule = self.rules.get(rule_name)
        if rule is None:
            return
        now = self.clock()
        start = now - now % rule.window
        if self.store.rate_limit_count(f"{rule_name}:{key}", start) >= rule.limit:
            raise TooManyRequests(
                f"Too many requests: at most {rule.limit} per {rule.window} s",
                retry_after=start + rule.window - now,
            )
