"""Engine errors that carry a protocol code and a hint a user can act on."""
from __future__ import annotations


class EngineError(RuntimeError):
    code = "engine_error"
    hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class WeightsMissing(EngineError):
    code = "weights_missing"


class OutOfMemory(EngineError):
    code = "out_of_memory"
    hint = ("lower the resolution, use fewer particles or samples per ray, or pick the 'fast' or "
            "'preview' preset")


class CheckpointError(EngineError):
    code = "checkpoint_corrupt"
    hint = "the previous checkpoint is used when one exists; delete the run's ckpt/ folder to start over"


class MeshInputError(EngineError):
    code = "invalid_mesh"
    hint = "send a GLB, OBJ or PLY with at least one triangle (export the selected mesh from Blender)"


class JobCancelled(Exception):
    """Raised inside a stage when the job was asked to stop; the checkpoint is already on disk."""

    def __init__(self, stage: str, step: int, checkpoint: str | None):
        super().__init__(f"cancelled in {stage} at step {step}")
        self.stage, self.step, self.checkpoint = stage, step, checkpoint


def error_code(exc: BaseException) -> tuple[str, str]:
    """(code, hint) for any exception: engine errors, spec errors, torch OOM, the rest."""
    from .spec import SpecError
    if isinstance(exc, EngineError):
        return exc.code, exc.hint
    if isinstance(exc, SpecError):
        return "invalid_spec", "fix the fields listed in the message"
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return OutOfMemory.code, OutOfMemory.hint
    return "engine_error", "see the traceback in the job log; report it with the run folder's spec.json"
