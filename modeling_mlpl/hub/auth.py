"""Who may push, and how hard a push tries: the Hub token, and retrying transient failures."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable

logger = logging.getLogger(__name__)

# The flags differ by command: train.py / pseudo_label.py take --hub_token/--hub_dry_run, push_to_hub.py
# --token/--dry_run; a message naming the other command's flag sends the user to an unknown option.
MISSING_TOKEN_TEMPLATE = (
    "no Hugging Face token found: run `hf auth login` (or `huggingface-cli login`), set HF_TOKEN=<token>, "
    "or pass {token_flag}; use {dry_run_flag} to only write the folder"
)
MISSING_TOKEN_MESSAGE = MISSING_TOKEN_TEMPLATE.format(token_flag="--hub_token", dry_run_flag="--hub_dry_run")
TRANSIENT_STATUS = {408, 409, 423, 429, 500, 502, 503, 504}


class HubError(RuntimeError):
    """A user-facing problem (missing token, bad stage, missing files): scripts print it in one line."""


def resolve_token(token: str | None = None, *, token_flag: str = "--hub_token", dry_run_flag: str = "--hub_dry_run") -> str:
    """An explicit token, else HF_TOKEN, else the token saved by `hf auth login`; HubError if none, naming
    the calling command's own ``token_flag`` and ``dry_run_flag``."""
    if token:
        return token
    from huggingface_hub import get_token

    found = os.environ.get("HF_TOKEN") or get_token()
    if not found:
        raise HubError(MISSING_TOKEN_TEMPLATE.format(token_flag=token_flag, dry_run_flag=dry_run_flag))
    return found


def package_attr(name: str) -> Any:
    """``modeling_mlpl.hub.<name>``, looked up when called: the package namespace is the one place
    where the token source (``resolve_token``) or the ``HfApi`` factory (``_make_api``) is substituted."""
    return getattr(sys.modules[__package__], name)


def is_transient_error(error: BaseException) -> bool:
    """Network drops, timeouts, rate limits and 5xx answers are worth retrying; 4xx (auth, missing repo) not."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status is not None:
        return int(status) in TRANSIENT_STATUS
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    # httpx / requests transport errors (not subclasses of ConnectionError)
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"TransportError", "TimeoutException", "NetworkError", "ConnectionError", "ChunkedEncodingError"})


def call_with_retries(
    fn: Callable[[], Any],
    what: str,
    max_attempts: int = 5,
    base_delay: float = 2.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] | None = None,
) -> Any:
    """Run ``fn``; on a transient error wait 2, 4, 8, ... s (capped) and try again, up to ``max_attempts``."""
    for attempt in range(1, max_attempts + 1):
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - classified just below
            if not is_transient_error(error) or attempt == max_attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            logger.warning("%s failed (%s: %s); retry %d/%d in %.0f s", what, type(error).__name__, error,
                           attempt, max_attempts - 1, delay)  # fmt: skip
            (sleep or time.sleep)(delay)  # looked up late so tests can patch time.sleep
    raise AssertionError("unreachable")
