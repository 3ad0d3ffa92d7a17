"""How a status reads. Which status may follow which is the lifecycle's table (test_lifecycle.py)."""

import ast
import itertools
import json
import pprint

import pytest

from circle_ws_web.status import ConnectionStatus as S

def test_status_values_are_the_spec_words():
    assert [s.value for s in S] == ["disconnected", "connecting", "authenticating", "connected", "reconnecting", "closed"]
    assert str(S.CONNECTED) == "connected" and S("closed") is S.CLOSED


# --- how a status reads: the same everywhere a user sees it --------------------------------


@pytest.mark.parametrize("status", list(S), ids=[s.value for s in S])
def test_status_reads_like_its_word_everywhere(status):
    word = status.value
    as_text = {
        "str": str(status),
        "f-string": f"{status}",
        "format": format(status),
        "str.format": "{}".format(status),
        "%s": "%s" % status,
        "f-string !s": f"{status!s}",
    }
    assert as_text == dict.fromkeys(as_text, word)
    # repr (and so every container's repr) is the word's own repr, a literal equal to the status
    as_repr = {
        "repr": repr(status),
        "f-string !r": f"{status!r}",
        "%r": "%r" % (status,),
        "ascii": ascii(status),
    }
    assert as_repr == dict.fromkeys(as_repr, repr(word))
    assert eval(repr(status)) == status
    assert "ConnectionStatus" not in repr(status) + str(status)


def test_format_specs_apply_to_the_word():
    assert f"{S.CONNECTED:>12}|{S.CLOSED:<8}|{S.CONNECTING:^14}" == "   connected|closed  |  connecting  "
    assert f"{S.AUTHENTICATING:.4}" == "auth"


def test_a_dict_of_statuses_prints_like_a_dict_of_words():
    # What a notebook cell showing manager.connection_statuses() displays.
    statuses = {"ws://127.0.0.1:8701": S.CONNECTED, "ws://127.0.0.1:8702": S.CLOSED}
    words = {url: s.value for url, s in statuses.items()}
    assert repr(statuses) == str(statuses) == repr(words)
    assert pprint.pformat(statuses) == pprint.pformat(words)
    assert repr([S.RECONNECTING]) == "['reconnecting']"
    assert ast.literal_eval(repr(statuses)) == statuses


class _Printer:
    """The part of IPython's RepresentationPrinter that _repr_pretty_ uses."""

    def __init__(self):
        self.parts = []

    def text(self, obj):
        self.parts.append(obj)


@pytest.mark.parametrize("status", list(S), ids=[s.value for s in S])
def test_notebook_output_matches_repr(status):
    # IPython looks `_repr_pretty_` up in the class __dict__ before its own printer for str.
    assert "_repr_pretty_" in S.__dict__
    printer = _Printer()
    status._repr_pretty_(printer, False)
    assert "".join(printer.parts) == repr(status) == repr(status.value)


def test_presentation_keeps_the_enum_and_str_semantics():
    assert S.CONNECTED == "connected" and isinstance(S.CONNECTED, str)
    assert S("connected") is S.CONNECTED and S["CLOSED"] is S.CLOSED
    assert {S.CONNECTED: 1}["connected"] == 1  # hashes like its word
    assert json.dumps({"s": S.CLOSED}) == '{"s": "closed"}'
    assert len(S) == 6 and "_repr_pretty_" not in S.__members__
