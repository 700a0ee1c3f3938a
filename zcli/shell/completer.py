"""The shell's prompt-toolkit completer: the text before the cursor, split into words, handed
to the shared :class:`zcli.complete.Engine`; names come from memory, never from the network.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from zcli.catalogue import Catalogue
from zcli.complete import Engine

if TYPE_CHECKING:
    from zcli.complete import NameSource


def split_line(text: str) -> tuple[list[str], str]:
    """The words of ``text`` (the last is the one being completed, ``""`` after a space)
    and that last word as typed (quotes included), which a completion replaces."""
    text = text.replace("\\\n", " ")
    raw = text[len(text.rstrip("\n\t ")) :]
    if raw:  # ends with blank: a new word starts
        try:
            return [*shlex.split(text), ""], ""
        except ValueError:
            return [*text.split(), ""], ""
    cut = max(text.rfind(" "), text.rfind("\t"), text.rfind("\n"))
    typed = text[cut + 1 :]
    try:
        words = shlex.split(text)
    except ValueError:  # an open quote: complete the words as written
        words = text.split()
    return (words or [""]), typed


class ShellCompleter(Completer):
    """Completion for one shell; ``catalogue`` is a callable so that a reconnect that
    brings a new catalogue is picked up at the next keystroke."""

    def __init__(self, catalogue: Callable[[], Catalogue | None], names: NameSource) -> None:
        self._catalogue = catalogue
        self.names = names
        self._engine: Engine | None = None

    def engine(self) -> Engine | None:
        cat = self._catalogue()
        if cat is None:
            return None
        if self._engine is None or self._engine.cat is not cat:
            self._engine = Engine(cat, self.names, interactive=True)
        return self._engine

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        engine = self.engine()
        if engine is None:
            return
        words, typed = split_line(document.text_before_cursor)
        for cand in engine.complete(words):
            yield Completion(
                cand.text,
                start_position=-len(typed),
                display=cand.shown,
                display_meta=cand.meta,
            )
