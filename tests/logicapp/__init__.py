"""A test-only interpreter for the subset of the Azure Logic Apps workflow definition language the
templates in logic_app_templates/ use, plus an ARM deployment step and offline schema validation:

- ``expressions``/``functions``: @-expressions, @{...} interpolation, the functions implemented;
- ``checks``: what the interpreter refuses before running (unknown functions, action types, ...);
- ``engine``: triggers, actions, runAfter, Until/If/Scope, run status; ``http``: the Http action;
- ``arm``: parameters and [ARM expressions] of a template; ``frontend``: the Request trigger's
  endpoint with the asynchronous Response; ``validate``: ARM and workflow schemas (``schemas/``,
  provenance in ``schemas/SOURCES.md``); ``real_templates``: public templates as positive controls.
"""
