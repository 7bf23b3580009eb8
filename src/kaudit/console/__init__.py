"""The console: a web console and REST API where people administer Kafka behind login
and RBAC, each action audited with the user, the request, the decision and the result."""
