"""Two small fixes to the HTML the theme stack emits, so a reader's console stays clean.

* sphinx-thebe's inline configuration script is registered twice under Jupyter Book 1,
  which makes the browser report "Identifier 'THEBE_JS_URL' has already been declared":
  identical scripts are emitted once.
* The site stays light. The figures are matplotlib images drawn on white, with the book's
  colour-blind palette chosen against a white background; on the dark theme they would be
  bright rectangles on black, and the theme dims them. An inline script, run before the theme's
  own, sets the mode and theme to "light" (also for a reader whose system prefers dark, or who
  chose dark before), and the theme switch is hidden. It also keeps the theme from logging
  "Got invalid theme mode" on a first visit (an empty mode).
"""

from __future__ import annotations

LIGHT_ONLY = (
    "(() => { const d = document.documentElement.dataset; d.mode = 'light'; d.theme = 'light';"
    " try { localStorage.setItem('mode', 'light'); localStorage.setItem('theme', 'light'); }"
    " catch (e) {} })();"
)
HIDE_SWITCH = "<style>.theme-switch-button { display: none !important; }</style>"


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


def _hide_theme_switch(app, pagename, templatename, context, doctree) -> None:
    context["metatags"] = context.get("metatags", "") + HIDE_SWITCH


def setup(app):
    app.add_js_file(None, body=LIGHT_ONLY, priority=100)
    app.connect("html-page-context", _hide_theme_switch)
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
