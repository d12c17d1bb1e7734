"""The transformer's window settings (no torch: ingest reads them too). See :mod:`streamguard.models.transformer`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from streamguard.errors import UserError


@dataclass(frozen=True)
class Windowing:
    """How a function's source becomes encoder windows (``transformer.strip_comments``, ``window``, ``stride``,
    ``max_windows``); saved with the model, so inference reads functions as training did."""

    window: int
    """Positions per window, the special tokens included (at most the encoder's ``max_length``)."""
    stride: int
    """Content tokens from one window's start to the next (``window - 2``: back to back; less: overlapping)."""
    max_windows: int
    """Windows kept per function; tokens beyond the last are dropped."""
    specials: int = 2
    """Special tokens per window (RoBERTa/BERT: 2)."""
    strip_comments: bool = False
    """Comments removed from the text before tokenizing (``transformer.strip_comments``;
    :func:`streamguard.data.hygiene.strip_comments`). False for a model saved without the setting: it read them."""

    def __post_init__(self):
        if self.window <= self.specials:
            raise UserError(f"transformer.window={self.window}: needs more than {self.specials} positions")
        if not 1 <= self.stride <= self.content:
            raise UserError(f"transformer.stride={self.stride}: expected 1..{self.content} (window - {self.specials}; "
                             "a larger stride would skip tokens)")
        if self.max_windows < 1:
            raise UserError(f"transformer.max_windows={self.max_windows}: expected >= 1")

    @property
    def content(self) -> int:
        """Content tokens per window."""
        return self.window - self.specials

    @property
    def budget(self) -> int:
        """Content tokens the windows cover; a function with more is truncated."""
        return self.content + (self.max_windows - 1) * self.stride

    def count(self, n_tokens: int) -> int:
        """Windows a function of ``n_tokens`` content tokens gets (at least 1, at most ``max_windows``)."""
        need = 1 + -(-max(0, n_tokens - self.content) // self.stride)
        return min(need, self.max_windows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Windowing":
        return cls(**{k: int(d[k]) for k in ("window", "stride", "max_windows", "specials") if k in d},
                   strip_comments=bool(d.get("strip_comments", False)))

    def text(self, code: str) -> str:
        """What the tokenizer reads of a function's source."""
        if not self.strip_comments:
            return code
        from streamguard.data.hygiene import strip_comments

        return strip_comments(code)

    @classmethod
    def from_config(cls, tc) -> "Windowing":
        """From a ``TransformerConfig``: ``window`` None -> ``max_length``, ``stride`` None -> back to back."""
        window = tc.max_length if tc.window is None else int(tc.window)
        if window > tc.max_length:
            raise UserError(f"transformer.window={window}: above transformer.max_length={tc.max_length} "
                             "(the encoder's positions)")
        return cls(window=window, stride=window - 2 if tc.stride is None else int(tc.stride),
                   max_windows=int(tc.max_windows), strip_comments=bool(tc.strip_comments))
