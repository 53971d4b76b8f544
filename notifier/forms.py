"""The notification settings page's form: the matrix of kinds × channels and the digest's cadence.

A plain HTML form (it works without JavaScript): each channel is one checkbox list named after it,
and a checkbox is sent only when ticked, so the whole matrix is posted every time. The in-app
column is the kind's mute switch read the other way round (ticked = told, not muted).
"""
from django import forms

from . import channels
from .models import Digest, Kind

# The rows, in the order people think of them: about what you wrote and said, then reactions; a
# kind added later gets its row at the end (the form mutes every kind whose in-app box is not sent,
# so each one must have a box).
_ORDER = [Kind.COMMENT, Kind.REPLY, Kind.MENTION, Kind.LIKE, Kind.FOLLOW, Kind.NEW_POST]
KIND_ROWS = _ORDER + [kind for kind in Kind if kind not in _ORDER]
# The matrix's columns: (form field, column heading, checkbox id prefix).
COLUMNS = [("in_app", "In-app", "inapp"), (channels.WEB_PUSH, "Web Push", "push"), (channels.EMAIL, "Email digest", "email")]


def chosen(state, channel: str) -> list[str]:
    """The kinds the user left on for `channel`, muted or not (channels.kinds_on leaves muted
    kinds out: they are sent nowhere, but the choice is kept for when the mute goes)."""
    off = set(channels.split(getattr(state, channels.OFF_FIELD[channel])))
    return [k for k in Kind.values if k not in off]


def _kinds_field():
    return forms.MultipleChoiceField(
        choices=Kind.choices, required=False, widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": "Unknown kind: %(value)s.", "invalid_list": "Kinds come as a list."},
    )


class ChannelMatrixForm(forms.Form):
    in_app = _kinds_field()
    web_push = _kinds_field()
    email = _kinds_field()
    email_digest = forms.ChoiceField(
        choices=Digest.choices, error_messages={
            "invalid_choice": "The email digest is off, hourly or daily, not %(value)s.",
            "required": "Choose how often the email digest comes: off, hourly or daily."},
    )

    def preferences(self) -> dict:
        """services.set_preferences' arguments for what was posted. A muted kind's push and email
        boxes are disabled (so never sent); a hidden field beside each one that is ticked carries
        the choice, which comes back when the kind is unmuted (muting wins meanwhile)."""
        data = self.cleaned_data
        return {
            "muted_kinds": [k for k in Kind.values if k not in data["in_app"]],
            "channels_on": {channel: data[channel] for channel in channels.CHANNELS},
            "email_digest": data["email_digest"],
        }


def matrix(state, posted: dict | None = None) -> list[dict]:
    """The rows the page shows: each kind with its three boxes, from the stored state or from a
    refused submission's valid parts (so what the user ticked is not lost)."""
    if posted is None:
        in_app = [k for k in Kind.values if k not in state.muted_kind_list]
        on = {channel: chosen(state, channel) for channel in channels.CHANNELS}
    else:
        in_app, on = posted["in_app"], {channel: posted[channel] for channel in channels.CHANNELS}
    rows = []
    for kind in KIND_ROWS:
        muted = kind not in in_app
        cells = [{"name": "in_app", "id": f"inapp-{kind}", "column": COLUMNS[0][1], "checked": not muted,
                  "disabled": False}]
        cells += [{"name": name, "id": f"{prefix}-{kind}", "column": heading, "checked": kind in on[name],
                   "disabled": muted} for name, heading, prefix in COLUMNS[1:]]
        rows.append({"kind": kind.value, "label": kind.label, "muted": muted, "cells": cells})
    return rows
