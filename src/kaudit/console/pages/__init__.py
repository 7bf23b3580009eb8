"""The console's pages: server-rendered Jinja2 templates, the vendored htmx (with its
licence) and the stylesheet, and the routes that render them (`routes`)."""
