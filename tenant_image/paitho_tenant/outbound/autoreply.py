"""Auto-replies: RFC 3834 headers and the vendors' own, out-of-office phrases in English,
German, French and Spanish, and the return date the sender states (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from email.message import Message

# Headers that mark a message as machine-generated (RFC 3834 and what vendors send instead).
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply")
_PRECEDENCE_AUTO = {"auto_reply", "bulk", "junk"}

_OOO_SUBJECT = re.compile(
    r"(automatic reply|auto[- ]?reply|autoreply|out of (the )?office|away from (the )?office"
    r"|on vacation|abwesenheit|automatische antwort|nicht im b(u|ue)ro|reponse automatique"
    r"|absence du bureau|absent du bureau|respuesta automatica|fuera de la oficina"
    r"|ausencia|vacaciones|conges)",
    re.I,
)
_OOO_BODY = re.compile(
    r"(out of (the )?office|i am (currently )?(away|out|on (annual )?leave|on vacation"
    r"|travell?ing)|i'?m (currently )?(away|out of|on (annual )?leave|on vacation)"
    r"|away from (my|the) (desk|office)"
    r"|limited access to (my )?e-?mail|will (be )?(back|return)|returning on"
    r"|nicht im b(u|ue)ro|abwesend|im urlaub|keinen zugriff auf (meine )?e-?mails|wieder erreichbar"
    r"|bin ab .{0,30} wieder|absent(e)? du bureau|je suis absent|en conges|de retour le"
    r"|acces limite a mes (e-?)?mails|fuera de la oficina|estoy de vacaciones|estare fuera"
    r"|ausente|regresare|volvere|de vuelta el)",
    re.I,
)

_MONTHS = {
    # English
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
    "oct": 10, "nov": 11, "dec": 12,
    # German
    "januar": 1, "jaenner": 1, "februar": 2, "maerz": 3, "marz": 3, "mai": 5, "juni": 6,
    "juli": 7, "oktober": 10, "dezember": 12,
    # French (accents folded)
    "janvier": 1, "fevrier": 2, "mars": 3, "avril": 4, "juin": 6, "juillet": 7, "aout": 8,
    "septembre": 9, "octobre": 10, "novembre": 11, "decembre": 12,
    # Spanish
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7,
    "agosto": 8, "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
}  # fmt: skip
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
# Words that introduce the return date ("until", "back on", "bis", "jusqu'au", "hasta" ...).
_CUE = (
    r"\b(until|till|through|back on|back in the office on|return(ing)? on|return|returning|back"
    r"|bis (zum|einschliesslich)?|ab dem|ab|wieder am|zuruck am|jusqu'?au|jusqu'?a|de retour le"
    r"|retour le|a partir du|hasta el|hasta|regresare el|volvere el|de vuelta el|a partir del)\b"
)
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NUMERIC = re.compile(r"(\d{1,2})[./](\d{1,2})(?:[./](\d{2,4}))?")
_DAY_MONTH = re.compile(
    r"(\d{1,2})(?:st|nd|rd|th|er|\.)?\s+(?:de\s+)?("
    + _MONTH_NAMES
    + r")\.?(?:\s+(?:de\s+)?(\d{4}))?"
)
_MONTH_DAY = re.compile(r"(" + _MONTH_NAMES + r")\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?")


def fold(text: str) -> str:
    """Lower case without accents (and ß as ss, ä as a), for phrase matching."""
    text = text.replace("ß", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def is_auto_submitted(msg: Message) -> bool:
    """True when the headers say a machine sent it (RFC 3834 or a vendor's equivalent)."""
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    if any(msg.get(h) is not None for h in _AUTO_HEADERS):
        return True
    if str(msg.get("Precedence", "")).strip().lower() in _PRECEDENCE_AUTO:
        return True
    return str(msg.get("X-Auto-Response-Suppress", "")).strip().lower() == "all" and bool(
        _OOO_SUBJECT.search(fold(str(msg.get("Subject", ""))))
    )


def looks_out_of_office(subject: str, body: str) -> bool:
    return bool(_OOO_SUBJECT.search(fold(subject)) or _OOO_BODY.search(fold(body[:4000])))


def return_date(text: str, received: dt.date) -> dt.date | None:
    """The first date after a return cue ("until", "bis", "jusqu'au", "hasta" ...), resolved to
    the next occurrence on or after `received` when the year is left out; None if none."""
    folded = fold(text[:4000])
    for cue in re.finditer(_CUE, folded):
        window = folded[cue.end() : cue.end() + 60]
        found = _parse_date(window, received)
        if found is not None:
            return found
    return None


def _parse_date(window: str, received: dt.date) -> dt.date | None:
    candidates: list[tuple[int, dt.date | None]] = []
    if m := _ISO.search(window):
        candidates.append((m.start(), _make(int(m[1]), int(m[2]), int(m[3]), received)))
    if m := _DAY_MONTH.search(window):
        year = int(m[3]) if m[3] else None
        candidates.append((m.start(), _make(year, _MONTHS[m[2]], int(m[1]), received)))
    if m := _MONTH_DAY.search(window):
        year = int(m[3]) if m[3] else None
        candidates.append((m.start(), _make(year, _MONTHS[m[1]], int(m[2]), received)))
    m = _NUMERIC.search(window)
    if m and not _ISO.search(window[max(0, m.start() - 5) : m.end()]):
        year = int(m[3]) if m[3] else None
        if year is not None and year < 100:
            year += 2000
        a, b = int(m[1]), int(m[2])
        # Day first (Europe) unless that is impossible, then month first (US).
        day, month = (a, b) if b <= 12 else (b, a)
        candidates.append((m.start(), _make(year, month, day, received)))
    valid = [(pos, d) for pos, d in candidates if d is not None]
    if not valid:
        return None
    return min(valid, key=lambda item: item[0])[1]


def _make(year: int | None, month: int, day: int, received: dt.date) -> dt.date | None:
    try:
        if year is not None:
            return dt.date(year, month, day)
        found = dt.date(received.year, month, day)
        if found < received:
            found = dt.date(received.year + 1, month, day)
        return found
    except ValueError:
        return None
