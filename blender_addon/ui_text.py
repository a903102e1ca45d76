"""Text for the sidebar: lines wrapped to the region's width, short ETAs and job lines (pure Python).

Blender labels never wrap and cut long text with an ellipsis in the middle, which is how an error
lost its reason and a job line read "Job 20261123-…: R…". Everything long goes through `wrap`.
"""
import textwrap

CHAR_PX = 7.0  # average label glyph width at UI scale 1 (Blender's default font, 11 pt)
MIN_CHARS = 16


def chars_per_line(region_width_px: float, ui_scale: float = 1.0, margin_px: float = 40.0) -> int:
    """How many characters of label text fit across a region (icon and margins excluded)."""
    return max(MIN_CHARS, int((region_width_px - margin_px * ui_scale) / (CHAR_PX * ui_scale)))


def wrap(text: str, width: int) -> list:
    """Every line of `text` wrapped at `width` characters; nothing is ever dropped (long paths are
    broken mid-word, blank lines kept)."""
    out = []
    for line in str(text).splitlines() or [""]:
        out += textwrap.wrap(line, width=max(MIN_CHARS, width), break_long_words=True,
                             break_on_hyphens=False) or [""]
    return out


def eta(seconds: float) -> str:
    """'ETA 4m05s', 'ETA 1h14m', 'ETA 15d4h'; '' when unknown."""
    if seconds <= 0:
        return ""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    if h >= 48:
        d, h = divmod(h, 24)
        return f"ETA {d}d{h}h"
    return f"ETA {h}h{m:02d}m" if h else f"ETA {m}m{s:02d}s"


def short_job_id(job_id: str, keep: int = 6) -> str:
    """The distinctive tail of a job id (ids start with the date, which every recent job shares)."""
    return job_id if len(job_id) <= keep + 1 else "…" + job_id[-keep:]
