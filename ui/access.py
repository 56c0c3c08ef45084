"""Who may use the app, and which files it may read.

By default the app is a local tool: ``.streamlit/config.toml`` binds it to 127.0.0.1 and every path a
user types is theirs to read. Serving it to a network is an explicit opt-in (README, "Serving on a
network"): started with a non-loopback ``--server.address`` (or ``TUNING_ADVISOR_NETWORK=1``), the app
then

- refuses to start without ``TUNING_ADVISOR_TOKEN``, and asks every browser session for that token:
  sent with the page's request (``Authorization: Bearer <token>``, as a reverse proxy or a script adds
  it, or the cookie ``tuning_advisor_token``), typed in a password field, or once ``?token=...`` in a
  link (accepted, then dropped from the address at once, so it stays in neither the browser's history
  nor a shared link). The token is compared in constant time and never logged or shown;
- reads files only under the allowed roots: the data folder, the Hugging Face cache, and the folders in
  ``TUNING_ADVISOR_ALLOWED_ROOTS`` (separated by ``:``). A path outside them is refused with the same
  message whether or not it exists, so the app cannot be used to probe the server's disk.
"""
from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from estimators.errors import InputError
from tuners import store
from tuners.localmodels import hub_cache_dir

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def network_mode() -> bool:
    """True when the app serves beyond this machine (or the operator says so)."""
    if os.environ.get("TUNING_ADVISOR_NETWORK", "").strip().lower() in ("1", "true", "yes"):
        return True
    import streamlit as st

    address = (st.get_option("server.address") or "").strip()
    return address not in LOOPBACK  # an empty address means every interface


def allowed_roots() -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get("TUNING_ADVISOR_ALLOWED_ROOTS", "").split(os.pathsep)
             if p.strip()]
    return [Path(os.path.realpath(p)) for p in (store.home(), hub_cache_dir(), *extra)]


def checked_path(text: str, what: str) -> str:
    """``text`` as a path the app may read. In network mode a path outside the allowed roots (after
    resolving ``..`` and symbolic links) is refused without saying whether it exists."""
    if not network_mode():
        return text
    real = Path(os.path.realpath(Path(text).expanduser()))
    roots = allowed_roots()
    if not any(real == root or root in real.parents for root in roots):
        raise InputError(f"this server reads {what} only under its allowed folders "
                         f"({', '.join(str(r) for r in roots)}): put it there, or upload it")
    return str(real)


COOKIE = "tuning_advisor_token"
"""The cookie that may carry the token (set by the operator's login page or proxy)."""


def sent_token(headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    """The token the browser (or a proxy in front of it) sent with the page's request:
    ``Authorization: Bearer <token>`` first, else the ``tuning_advisor_token`` cookie; None when neither."""
    auth = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == "authorization"), None)
    scheme, _, value = (auth if isinstance(auth, str) else "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    cookie = cookies.get(COOKIE)
    return (cookie.strip() or None) if isinstance(cookie, str) else None  # (a test harness may give non-strings)


def token_problem(*offered: str | None) -> str | None:
    """Why this session may not use the app, or None when it may: one of the tokens offered (sent with
    the request, from the link, typed) must equal ``TUNING_ADVISOR_TOKEN`` (compared in constant time)."""
    expected = os.environ.get("TUNING_ADVISOR_TOKEN", "")
    if not expected:
        return ("this app is served on a network but TUNING_ADVISOR_TOKEN is not set: the operator must set a "
                "token (see README, 'Serving on a network')")
    given = [t for t in offered if t]
    if not given:
        return "enter the access token (or open the link with ?token=..., or send it as Authorization: Bearer ...)"
    # every offered token is compared (no early exit on the first): the time says nothing about which matched
    matches = [hmac.compare_digest(t.encode(), expected.encode()) for t in given]
    return None if any(matches) else "the access token is not right"


def gate() -> None:
    """In network mode: stops the page until the session gave the token. Locally: nothing."""
    if not network_mode():
        return
    import streamlit as st

    if st.session_state.get("_access_ok"):
        return
    from_link = st.query_params.get("token")
    if from_link is not None:
        del st.query_params["token"]  # read once, never left in the address (history, logs, shared links)
    sent = sent_token(st.context.headers, st.context.cookies)
    if (sent or from_link) and token_problem(sent, from_link) is None:
        st.session_state["_access_ok"] = True  # given with the request or the link: no field to show
        return
    st.title("Tuning Advisor")
    typed = None
    if os.environ.get("TUNING_ADVISOR_TOKEN"):
        typed = st.text_input("Access token", type="password", key="_access_token")
    problem = token_problem(sent, from_link, typed)
    if problem:
        st.error(problem)
        st.stop()
    st.session_state["_access_ok"] = True
