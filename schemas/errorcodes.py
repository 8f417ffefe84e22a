"""
Classification of ``errorCode`` on ``message-failed``.

The category follows the structure of Bandwidth's codes: the first digit says
client (4), server or service (5) or ambiguous (9); within 4xxx, 47xx are
carrier rejections; within 5xxx, 56xx are carrier service failures. The retry
advice follows Bandwidth's guidance per code where it is specific (see
``domain.md`` section 7) and otherwise the leading digits.
"""

from __future__ import annotations

from typing import Literal

RetryAdvice = Literal["no", "yes", "once", "later", "unknown"]
ErrorCategory = Literal[
    "bandwidth-client",
    "carrier-client",
    "bandwidth-server",
    "carrier-service",
    "ambiguous",
    "unknown",
]

# Codes whose advice differs from what their leading digits would give.
_SPECIFIC_ADVICE: dict[int, RetryAdvice] = {
    4780: "later",  # T-Mobile daily volume exceeded: back off
    4781: "later",  # AT&T 10DLC throttling
    4785: "later",  # carrier volumetric limit: Bandwidth says retry later
    5106: "once",  # routing retries already exhausted
    5229: "no",  # needs a provisioning fix first
    5999: "once",  # unknown Bandwidth error
    9902: "no",  # receipt timed out; the message may have arrived
    9999: "unknown",  # carrier code unknown to Bandwidth: case by case
}


def error_category(code: int) -> ErrorCategory:
    """Who rejected the message, by the code's leading digits."""
    text = str(code)
    if len(text) != 4:
        return "unknown"
    if text[0] == "4":
        return "carrier-client" if text[1] == "7" else "bandwidth-client"
    if text[0] == "5":
        return "carrier-service" if text[1] == "6" else "bandwidth-server"
    if text[0] == "9":
        return "ambiguous"
    return "unknown"


def retry_advice(code: int) -> RetryAdvice:
    """Whether sending the message again can help."""
    specific = _SPECIFIC_ADVICE.get(code)
    if specific is not None:
        return specific
    category = error_category(code)
    if category in ("bandwidth-client", "carrier-client"):
        return "no"
    if category == "bandwidth-server":
        return "yes"
    if category == "carrier-service":
        return "once"
    return "unknown"
