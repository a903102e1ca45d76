"""Checkpoints are atomic, newest wins, and a damaged one falls back to the previous with a message."""
import torch

from engine.checkpoint import CheckpointStore
from engine.errors import CheckpointError


def test_newest_wins_and_old_ones_are_pruned(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30):
        store.save("nerf", step, {"w": torch.full((3,), float(step))})
    assert [s for s, _ in store.list("nerf")] == [30, 20]
    ck = store.latest("nerf")
    assert ck.step == 30 and torch.equal(ck.state["w"], torch.full((3,), 30.0))
    assert not list(tmp_path.glob("*.tmp")), "no temp files left behind"


def test_corrupt_or_partial_checkpoint_falls_back_with_a_clear_message(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    store.save("nerf", 10, {"w": torch.ones(2)})
    good20 = store.save("nerf", 20, {"w": torch.ones(2) * 2})
    store.save("nerf", 30, {"w": torch.ones(2) * 3})
    newest = store.path_for("nerf", 30)
    newest.write_bytes(newest.read_bytes()[: len(newest.read_bytes()) // 2])  # partial write
    messages = []
    ck = store.latest("nerf", log=messages.append)
    assert ck.step == 20 and ck.path == good20
    assert len(messages) == 1 and "nerf-00000030.pt" in messages[0] and "previous" in messages[0]
    try:
        store.load(newest)
    except CheckpointError as exc:
        assert "unreadable" in str(exc) and exc.code == "checkpoint_corrupt"
    else:
        raise AssertionError("a truncated checkpoint must not load")


def test_foreign_file_is_rejected(tmp_path):
    store = CheckpointStore(tmp_path)
    path = store.path_for("texture", 5)
    torch.save({"something": 1}, path)
    assert store.latest("texture", log=lambda m: None) is None
