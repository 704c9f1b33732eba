"""Inlets: other tools' webhooks (Alertmanager, Grafana, GitHub, GitLab, any JSON) turned into
Telegram messages — templated, durable, and for alerts one message per group, edited in place.

The flow, file by file: `receiver` (the route, the wiring), `config` ([[inlets]]), `auth`
(each kind's credential), the kind's parser (`alertmanager`, `grafana`, `events` for
GitHub/GitLab/generic), `service` (payload → commands), `lifecycle` + `alerts` (a group's
message and its state), `templates`, then, in the worker, `show` (send or edit the
message), and for taps on its buttons `actions`.
"""
