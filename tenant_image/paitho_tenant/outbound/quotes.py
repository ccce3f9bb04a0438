"""Strip quoted history from a reply for display (pure).

quotequail finds `>`-quoted blocks and common reply headers; on top of it we drop the
attribution line it leaves in place ("On ... wrote:", "Am ... schrieb ...:", "Le ... a écrit :",
"El ... escribió:") and cut Outlook-style header blocks ("From: / Sent: / To:" and
"-----Original Message-----") that carry no quote marks.
"""

from __future__ import annotations

import re

import quotequail

_ATTRIBUTION = re.compile(
    r"\n[^\n]*(wrote|schrieb|a écrit|a ecrit|escribió|escribio)\s*:\s*$", re.I | re.S
)
_OUTLOOK = re.compile(
    r"^(-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original)"
    r"\s*-{2,}|(from|von|de)\s*:.*\n\s*(sent|gesendet|envoyé|enviado|date|datum|fecha)\s*:)",
    re.I | re.M,
)


def strip_quoted(text: str) -> str:
    """The new part of a reply, without quoted history or the signature separator's tail."""
    text = text.replace("\r\n", "\n")
    parts = quotequail.quote(text)
    visible = "".join(chunk for shown, chunk in parts if shown) if parts else text
    cut = _OUTLOOK.search(visible)
    if cut:
        visible = visible[: cut.start()]
    visible = _ATTRIBUTION.sub("", visible.rstrip())
    return visible.strip()
