"""Two small fixes to the HTML the theme stack emits, so a reader's console stays clean.

* sphinx-thebe's inline configuration script is registered twice under Jupyter Book 1,
  which makes the browser report "Identifier 'THEBE_JS_URL' has already been declared":
  identical scripts are emitted once.
* On a reader's first visit pydata-sphinx-theme finds an empty theme mode and logs
  "Got invalid theme mode"; an inline script sets the documented default, "auto", first.
"""

from __future__ import annotations

DEFAULT_MODE = (
    "(() => { const d = document.documentElement.dataset; d.mode = d.mode || 'auto'; })();"
)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # an inline script may be registered with filename None or "": same script
        key = (getattr(script, "filename", None) or "", script.attributes.get("body", ""))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.add_js_file(None, body=DEFAULT_MODE, priority=100)
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
