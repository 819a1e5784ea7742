"""The frame decoder and the output rebuild, on their own."""

from execd_client._core import Follower
from execd_client.events import End, Stdout, piece
from execd_client.sse import Comment, Data, Decoder

STANDARD = (
    b": ping\n\n"
    b'data: {"type":"init","text":"c1","timestamp":1}\n\n'
    b'id: 1\nevent: stdout\ndata: {"eid":1,"type":"stdout","text":"a","timestamp":1}\n\n'
    b'id: 2\r\nevent: stdout\r\ndata: {"eid":2,"type":"stdout","text":"b","partial":true,"timestamp":1}\r\n\r\n'
    b'id: 3\revent: error\rdata: {"eid":3,"type":"error","error":{"ename":"HostRestarted","evalue":"-1","traceback":[]},"timestamp":1}\r\r\n'
)
LEGACY = (
    b'{"type":"init","text":"c1","timestamp":1}\n\n'
    b'{"type":"ping","text":"pong","timestamp":1}\n\n'
    b'{"eid":1,"type":"stdout","text":"a","timestamp":1}\n\n'
    b'{"eid":2,"type":"stdout","text":"b","partial":true,"timestamp":1}\n\n'
    b'{"eid":3,"type":"error","error":{"ename":"HostRestarted","evalue":"-1","traceback":[]},"timestamp":1}\n\n'
)


def events_of(wire: bytes, step: int) -> list:
    f = Follower(None, 0)
    out = []
    for i in range(0, len(wire), step):
        out += f.feed(wire[i : i + step])
    return out


def test_both_framings_at_every_chunk_size() -> None:
    for wire in (STANDARD, LEGACY):
        whole = events_of(wire, len(wire))
        assert [type(e).__name__ for e in whole] == ["Started", "Stdout", "Stdout", "End"]
        end = whole[-1]
        assert isinstance(end, End) and end.reason == "host-restarted" and end.exit_code == -1
        for step in range(1, 40):
            assert events_of(wire, step) == whole, step


def test_comments_multiline_data_and_bom() -> None:
    d = Decoder()
    frames = d.feed(b"\xef\xbb\xbf: hi\ndata: x\ndata:y\n\nevent: z\n\n")
    assert frames == [Comment(), Data("x\ny", None)]


def test_a_cut_frame_yields_nothing_and_eids_are_not_repeated() -> None:
    f = Follower("c1", 1)
    assert f.feed(STANDARD[: STANDARD.index(b"id: 2") + 20]) == []  # eid 1 is not after the cursor
    f.cut()
    assert [e.eid for e in f.feed(STANDARD[STANDARD.index(b"id: 2"):]) if isinstance(e, (Stdout, End))] == [2, 3]


def test_pieces_rebuild_exact_text() -> None:
    assert piece("a", False) + piece("\n", False) + piece("b", True) + piece("c", False) == "a\n\nbc\n"
