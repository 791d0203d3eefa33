"""Does a transcript read as a whole request? The end of turn waits less when it does.

A pause after "What is the status of" is the speaker thinking; after "What is the status of
load 427?" it is the end. The rule looks at the last words only: a sentence that ends on a
word that needs a continuation (an article, a preposition, a conjunction, an auxiliary, a
number that has more to come, a filler) is unfinished; a short answer ("yes", "no, cancel
it") or a request of three or more words that ends on any other word is finished. Anything
else (one or two words that are not an answer) is left to the default silence. Microseconds
per call; no model.
"""

from __future__ import annotations

import re
from enum import Enum


class Completeness(Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNSURE = "unsure"


# Words after which English needs more: determiners and possessives, prepositions,
# conjunctions, auxiliaries and question words at the end, number words that take a unit or
# more digits, fillers.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CONTINUES = _words(
    """
    a an the this that these those my our your their his her its any some every each
    of in at on for to from with about by into onto near between than like as via per
    and or but so because if when while whether then
    is are was were be been am do does did can could will would should shall may might must
    has have had isn't aren't wasn't don't doesn't didn't can't won't
    what what's where where's which who who's whom whose how how's why when's
    hundred thousand million point
    um uh er erm uhm hmm
    """
)
# Complete on their own (the confirmation of a read-back is one of these).
_ANSWERS = _words(
    """
    yes yeah yep yup no nope nah okay ok sure correct right confirm confirmed cancel stop
    thanks thank please never wait
    """
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def completeness(text: str) -> Completeness:
    words = _WORD.findall(text.lower())
    if not words:
        return Completeness.UNSURE
    if words[-1] in _CONTINUES:
        return Completeness.INCOMPLETE
    if words[0] in _ANSWERS or words[-1] in _ANSWERS or len(words) >= 3:
        return Completeness.COMPLETE
    return Completeness.UNSURE
