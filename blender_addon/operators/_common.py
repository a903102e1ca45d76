"""Small helpers shared by the operators."""
import json


def explain(cls, message: str) -> bool:
    """Tell the user why a button is disabled (Blender ≥ 3.0), then return False for poll()."""
    if hasattr(cls, "poll_message_set"):
        cls.poll_message_set(message)
    return False


def parse_overrides(text: str) -> dict:
    """Extra JobSpec overrides typed as JSON (advanced; also how tests shrink jobs)."""
    if not text.strip():
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("overrides must be a JSON object such as {\"nerf\": {\"steps\": 100}}")
    return value
