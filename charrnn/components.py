"""Gradio components that answer a bad value with one line naming the field.

Gradio checks each input before a handler runs. Text where a number belongs, a null, an
unknown choice or a link in place of an upload would otherwise reach the visitor as
Gradio's generic error, echo the whole input back, or make the server fetch the link.
The page uses these in place of the gr components of the same names.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

import gradio as gr
from gradio_client import utils as client_utils

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlong = 20


def shown(value: Any) -> str:
    """A value as an error message may quote it: at most a few dozen characters."""
    try:
        return _SHORT.repr(value)
    except ValueError:  # an int too long for Python to print
        return f"a {type(value).__name__} too long to show"


def _field(component: gr.components.Component) -> str:
    return str(component.label or "this field")


def checked_number(component: gr.components.Component, payload: Any) -> float:
    """payload as a finite number within the component's minimum and maximum, or a gr.Error."""
    low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
    bounds = f" from {low:g} to {high:g}" if low is not None and high is not None else ""
    if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload):
        raise gr.Error(f"{_field(component)} must be a number{bounds}, not {shown(payload)}")
    if (low is not None and payload < low) or (high is not None and payload > high):
        limits = [f"the minimum is {low:g}" if low is not None else "", f"the maximum is {high:g}" if high is not None else ""]
        raise gr.Error(f"{_field(component)}: {shown(payload)} is out of range; {' and '.join(x for x in limits if x)}")
    return payload


class Number(gr.Number):
    def preprocess(self, payload: Any) -> float | int | None:
        return super().preprocess(checked_number(self, payload))


class Slider(gr.Slider):
    def preprocess(self, payload: Any) -> float:
        return super().preprocess(checked_number(self, payload))


class Textbox(gr.Textbox):
    """A text box that refuses values that are not text, and text over max_length, on the server too."""

    def preprocess(self, payload: Any) -> str | None:
        if payload is not None and not isinstance(payload, str):
            raise gr.Error(f"{_field(self)} must be text, not {type(payload).__name__}")
        if payload is not None and self.max_length is not None and len(payload) > self.max_length:
            raise gr.Error(f"{_field(self)} is {len(payload):,} characters long; at most {self.max_length:,} are accepted")
        return super().preprocess(payload)


class _Choices:
    """A choice component whose unknown values are named shortly, with the choices."""

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)  # type: ignore[misc]
        except gr.Error:
            names = ", ".join(str(value) for _, value in self.choices)  # type: ignore[attr-defined]
            raise gr.Error(f"{_field(self)} must be one of {names}, not {shown(payload)}") from None  # type: ignore[arg-type]


class Radio(_Choices, gr.Radio):
    pass


class Dropdown(_Choices, gr.Dropdown):
    pass


class Checkbox(gr.Checkbox):
    def preprocess(self, payload: Any) -> bool | None:
        if payload is not None and not isinstance(payload, bool):
            raise gr.Error(f"{_field(self)} must be true or false, not {shown(payload)}")
        return super().preprocess(payload)


class File(gr.File):
    """An upload box that takes uploaded files only: a link in its place is refused, not downloaded."""

    async def async_move_resource_to_block_cache(self, url_or_file_path: Any) -> str | None:
        if isinstance(url_or_file_path, str) and client_utils.is_http_url_like(url_or_file_path):
            raise gr.Error(f"{_field(self)}: upload the file itself; links are not fetched")
        return await super().async_move_resource_to_block_cache(url_or_file_path)
