"""Routing rules: configurable through the API (``endpoints``), evaluated by a pure module (``evaluate``)
on the text's language (``language``), the channel, the customer and the tags."""
