"""The tenant's web app: server-rendered pages (jinja2, `templates/`) with htmx partial updates
(`static/htmx.min.js`, served by the tenant itself). Pages are thin over the same domain
functions the JSON API uses; every form carries the session's CSRF token (websec.py)."""
